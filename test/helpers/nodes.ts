/**
 * Test helpers for several nodes: a Redis server of the test's own (so a test may kill and restart it), and N
 * Synchat nodes, each `src/server/main.ts` in its own process with the same PostgreSQL database and Redis URL,
 * its own ports and data folder, and one shared media folder (PROTOCOL.md "Several nodes").
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { freePort, spawnServerProcess, type ServerChild } from './process.ts';
import { createTestDatabase } from './services.ts';

/** A redis-server of the test's own, on a fixed port so that a restart comes back at the same URL. */
export interface OwnRedis {
  url: string;
  /** SIGKILL (by PID) and wait for the exit. */
  kill(): Promise<void>;
  /** Starts it again on the same port (empty: it keeps nothing on disk). */
  start(): Promise<void>;
}

/** Starts a redis-server on a free port (`--save '' --appendonly no`). */
export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
      if (await pingRedis(port)) return;
      if (Date.now() > deadline) throw new Error('redis-server did not answer within 10 s');
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    async kill() {
      const c = child;
      if (!c || c.exitCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await exited;
    },
    start,
  };
}

async function pingRedis(port: number): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.setTimeout(500, () => (s.destroy(), resolve(false)));
    s.once('error', () => resolve(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.once('data', (d) => (s.destroy(), resolve(d.toString().startsWith('+PONG'))));
  });
}

/** One node of a test cluster. */
export interface TestNode {
  index: number;
  url: string;
  httpPort: number;
  tcpPort: number;
  env: Record<string, string>;
  server: ServerChild;
  /** Starts the node again (same ports, data folder and URLs) after it stopped or was killed. */
  restart(): Promise<void>;
}

/** A running test cluster. */
export interface TestNodes {
  nodes: TestNode[];
  dbUrl: string;
  /** Stops every node, drops the database, removes the folders. */
  stop(): Promise<void>;
}

/**
 * Starts `n` nodes on one fresh PostgreSQL database and `redisUrl`; `workers[i]` gateway processes for node i
 * (default 0). With `extraEnv.SYNCHAT_POSTGRES_URL` they use that database instead (the caller's: kept at stop).
 */
export async function startNodes(n: number, redisUrl: string, workers: number[] = [], extraEnv: Record<string, string> = {}): Promise<TestNodes> {
  const given = extraEnv.SYNCHAT_POSTGRES_URL;
  const db = given ? { url: given, drop: async () => {} } : await createTestDatabase('synchat_nodes');
  const root = mkdtempSync(join(tmpdir(), 'synchat-nodes-'));
  const nodes: TestNode[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const httpPort = await freePort();
      const tcpPort = await freePort();
      const env = {
        SYNCHAT_POSTGRES_URL: db.url,
        SYNCHAT_REDIS_URL: redisUrl,
        SYNCHAT_DATA_DIR: join(root, `node-${i}`),
        SYNCHAT_MEDIA_DIR: join(root, 'media'),
        SYNCHAT_HTTP_PORT: String(httpPort),
        SYNCHAT_TCP_PORT: String(tcpPort),
        SYNCHAT_WORKERS: String(workers[i] ?? 0),
        ...extraEnv,
      };
      const node: TestNode = {
        index: i,
        url: `http://127.0.0.1:${httpPort}`,
        httpPort,
        tcpPort,
        env,
        server: await spawnServerProcess(env),
        async restart() {
          node.server = await spawnServerProcess(env);
        },
      };
      nodes.push(node);
    }
  } catch (err) {
    await Promise.all(nodes.map((node) => node.server.stop()));
    await db.drop();
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
  return {
    nodes,
    dbUrl: db.url,
    async stop() {
      await Promise.all(nodes.map((node) => node.server.stop()));
      await db.drop();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/**
 * For a suite: registers `before` and `after` hooks that start a Redis of the suite's own and `n` nodes on it
 * (as {@link startNodes}) and stop them; returns a getter for the running cluster.
 */
export function nodesForSuite(n: number, workers: number[] = [], extraEnv: Record<string, string> = {}): () => TestNodes {
  let redis: OwnRedis | undefined;
  let cluster: TestNodes | undefined;
  before(async () => {
    redis = await startOwnRedis();
    cluster = await startNodes(n, redis.url, workers, extraEnv);
  });
  after(async () => {
    await cluster?.stop();
    await redis?.kill();
  });
  return () => cluster!;
}
