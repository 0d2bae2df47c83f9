/**
 * What the chaos runner breaks: one node on SQLite (kill -9, restart on the same data folder), or three nodes on a
 * private PostgreSQL and a Redis of the run's own (kill -9 a node, crash PostgreSQL, kill Redis; each restarted).
 * After the run each checks its storage: SQLite's `PRAGMA integrity_check`, and on both stores log density (every
 * user's seqs are 1..head, no gap; the primary key (uin, seq) rules out a duplicate) and the stored head.
 */
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort, spawnServerProcess, type ServerChild } from '../../test/helpers/process.ts';
import { startNodes, startOwnRedis, type OwnRedis, type TestNodes } from '../../test/helpers/nodes.ts';
import { startPrivatePostgres, type PrivatePostgres } from '../../test/helpers/private-postgres.ts';

/** One injected fault, for the record. */
export interface FaultRecord {
  /** ms since traffic started. */
  atMs: number;
  kind: 'kill9-node' | 'restart-postgres' | 'restart-redis';
  /** The node's index (cluster) or 0. */
  node?: number;
  /** How long the thing was down, ms (from the kill to answering again). */
  downMs: number;
}

/** What the storage check found. */
export interface StorageCheck {
  /** `ok`, or what `PRAGMA integrity_check` said; `n/a` on PostgreSQL. */
  integrity: string;
  /** Users whose log is not exactly seqs 1..head (or whose stored head differs), as `uin: count/max/head`. */
  density: string[];
}

/** A system under test. */
export interface Target {
  mode: 'single' | 'cluster';
  /** HTTP base URLs of the nodes. */
  urls: string[];
  /** Injects one fault chosen with `pick` (a random integer below n) and brings the thing back. */
  fault(pick: (n: number) => number, atMs: number, pauseMs: number): Promise<FaultRecord>;
  /** Restarts nodes that exited on their own (not killed by us); returns how many. */
  reviveExited(): Promise<number>;
  /** Stops the nodes and checks the storage they leave. */
  stopAndCheck(): Promise<StorageCheck>;
  /** Removes everything (after stopAndCheck, or on failure). */
  dispose(): Promise<void>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function isAlive(s: ServerChild): boolean {
  return s.child.exitCode === null && s.child.signalCode === null;
}

const DENSITY_SQL = `SELECT l.uin AS uin, count(*) AS n, max(l.seq) AS m, min(l.seq) AS lo, h.head AS head
  FROM log l LEFT JOIN heads h ON h.uin = l.uin GROUP BY l.uin, h.head
  HAVING count(*) <> max(l.seq) OR min(l.seq) <> 1 OR h.head IS NULL OR max(l.seq) <> h.head`;

function densityRows(rows: { uin: unknown; n: unknown; m: unknown; head: unknown }[]): string[] {
  return rows.map((r) => `uin ${r.uin}: ${r.n} entries, max seq ${r.m}, head ${r.head}`);
}

/** One node on SQLite, restarted on its own data folder and ports after each kill -9. */
export async function singleTarget(): Promise<Target> {
  const dataDir = mkdtempSync(join(tmpdir(), 'synchat-chaos-'));
  const env = { SYNCHAT_DATA_DIR: dataDir, SYNCHAT_WORKERS: '0', SYNCHAT_HTTP_PORT: String(await freePort()), SYNCHAT_TCP_PORT: String(await freePort()) };
  let server = await spawnServerProcess(env);
  return {
    mode: 'single',
    urls: [server.url],
    async fault(_pick, atMs, pauseMs) {
      const t = Date.now();
      await server.kill9();
      await sleep(pauseMs);
      server = await spawnServerProcess(env);
      return { atMs, kind: 'kill9-node', node: 0, downMs: Date.now() - t };
    },
    async reviveExited() {
      if (isAlive(server)) return 0;
      server = await spawnServerProcess(env);
      return 1;
    },
    async stopAndCheck() {
      await server.stop();
      const db = new Database(join(dataDir, 'synchat.db'), { readonly: true });
      try {
        const integrity = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join('; ');
        return { integrity, density: densityRows(db.prepare(DENSITY_SQL).all() as any[]) };
      } finally {
        db.close();
      }
    },
    async dispose() {
      if (isAlive(server)) await server.kill9();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Three nodes on a private PostgreSQL and an own Redis; a fault hits one node, PostgreSQL or Redis. */
export async function clusterTarget(): Promise<Target> {
  const pgServer: PrivatePostgres = await startPrivatePostgres();
  let redis: OwnRedis | undefined;
  let nodes: TestNodes | undefined;
  try {
    redis = await startOwnRedis();
    nodes = await startNodes(3, redis.url, [], { SYNCHAT_POSTGRES_URL: pgServer.url });
  } catch (err) {
    await redis?.kill();
    await pgServer.stop();
    throw err;
  }
  const own = { redis, nodes };
  const reviveExited = async () => {
    let n = 0;
    for (const node of own.nodes.nodes) {
      if (isAlive(node.server)) continue;
      await node.restart();
      n++;
    }
    return n;
  };
  return {
    mode: 'cluster',
    urls: own.nodes.nodes.map((n) => n.url),
    async fault(pick, atMs, pauseMs) {
      const t = Date.now();
      const which = pick(3);
      if (which === 0) {
        const node = own.nodes.nodes[pick(own.nodes.nodes.length)]!;
        await node.server.kill9();
        await sleep(pauseMs);
        await node.restart();
        return { atMs, kind: 'kill9-node', node: node.index, downMs: Date.now() - t };
      }
      if (which === 1) {
        await pgServer.crash();
        await sleep(pauseMs);
        await pgServer.start();
        return { atMs, kind: 'restart-postgres', downMs: Date.now() - t };
      }
      await own.redis.kill();
      await sleep(pauseMs);
      await own.redis.start();
      return { atMs, kind: 'restart-redis', downMs: Date.now() - t };
    },
    reviveExited,
    async stopAndCheck() {
      await Promise.all(own.nodes.nodes.map((n) => n.server.stop()));
      const c = new pg.Client({ connectionString: pgServer.url });
      await c.connect();
      try {
        return { integrity: 'n/a', density: densityRows((await c.query(DENSITY_SQL)).rows) };
      } finally {
        await c.end();
      }
    },
    async dispose() {
      await own.nodes.stop();
      await own.redis.kill();
      await pgServer.stop();
    },
  };
}
