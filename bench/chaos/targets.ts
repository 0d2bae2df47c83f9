/**
 * What the chaos runner breaks: one node on SQLite (kill -9, restart on the same data folder), or three nodes on a
 * private PostgreSQL and a Redis of the run's own (kill -9 a node, crash PostgreSQL, kill Redis; each restarted).
 * With `roll` the faults are planned restarts instead (docs/operations.md "Draining and rolling restarts"): one node's
 * gateway processes rolled by SIGHUP, or every node in turn stopped by SIGTERM (a drain) and started again.
 * After the run each checks its storage: SQLite's `PRAGMA integrity_check`, and on both stores log density (every
 * user's seqs are 1..head, no gap; the primary key (uin, seq) rules out a duplicate) and the stored head.
 */
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
  kind: 'kill9-node' | 'restart-postgres' | 'restart-redis' | 'roll-gateways' | 'roll-nodes';
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

/** How the faults of a run strike. */
export interface TargetOptions {
  /** Planned restarts instead of crashes (see the file comment). */
  roll?: boolean;
  /** Gateway processes per node (`SYNCHAT_WORKERS`). @default 0 (one process), 2 for a one-node roll */
  workers?: number;
  /** `SYNCHAT_DRAIN_MS` of every node, in ms. @default the server's (10000) */
  drainMs?: number;
}

/** The gateway processes of a cluster primary now, by pid: its children running the server (not tsx's esbuild). */
function childPids(pid: number): number[] {
  let pids: number[];
  try {
    pids = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when there are none
  }
  return pids.filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('src/server/main.ts');
    } catch {
      return false; // exited meanwhile
    }
  });
}

/**
 * SIGHUP to a node's primary, then waits until every gateway serving before it exited and as many new ones run
 * (the roll replaces them one at a time); throws if that takes over `guardMs`.
 */
async function rollGateways(server: ServerChild, workers: number, guardMs: number): Promise<void> {
  const pid = server.child.pid!;
  const before = new Set(childPids(pid));
  server.child.kill('SIGHUP');
  const until = Date.now() + guardMs;
  for (;;) {
    const now = childPids(pid);
    if (now.length === workers && now.every((p) => !before.has(p))) return;
    if (Date.now() > until) throw new Error(`the gateways were not all replaced within ${guardMs} ms (before ${[...before]}, now ${now})`);
    await sleep(100);
  }
}

/** SIGTERM (a drain), waits for the exit, which must be 0 (drained within SYNCHAT_DRAIN_MS), and starts it again. */
async function drainAndRestart(stop: () => Promise<void>, server: ServerChild, restart: () => Promise<void>): Promise<void> {
  await stop();
  if (server.child.exitCode !== 0) throw new Error(`a drained node exited with ${server.child.exitCode ?? server.child.signalCode}, not 0`);
  await restart();
}

function drainEnv(options: TargetOptions): Record<string, string> {
  return options.drainMs !== undefined ? { SYNCHAT_DRAIN_MS: String(options.drainMs) } : {};
}

const DENSITY_SQL = `SELECT l.uin AS uin, count(*) AS n, max(l.seq) AS m, min(l.seq) AS lo, h.head AS head
  FROM log l LEFT JOIN heads h ON h.uin = l.uin GROUP BY l.uin, h.head
  HAVING count(*) <> max(l.seq) OR min(l.seq) <> 1 OR h.head IS NULL OR max(l.seq) <> h.head`;

function densityRows(rows: { uin: unknown; n: unknown; m: unknown; head: unknown }[]): string[] {
  return rows.map((r) => `uin ${r.uin}: ${r.n} entries, max seq ${r.m}, head ${r.head}`);
}

/** One node on SQLite, restarted on its own data folder and ports after each kill -9 (or its gateways rolled). */
export async function singleTarget(options: TargetOptions = {}): Promise<Target> {
  const dataDir = mkdtempSync(join(tmpdir(), 'synchat-chaos-'));
  const workers = options.workers ?? (options.roll ? 2 : 0);
  if (options.roll && workers < 1) throw new Error('rolling the gateways of one node needs workers ≥ 1');
  const env = { SYNCHAT_DATA_DIR: dataDir, SYNCHAT_WORKERS: String(workers), SYNCHAT_HTTP_PORT: String(await freePort()), SYNCHAT_TCP_PORT: String(await freePort()), ...drainEnv(options) };
  let server = await spawnServerProcess(env);
  return {
    mode: 'single',
    urls: [server.url],
    async fault(_pick, atMs, pauseMs) {
      const t = Date.now();
      if (options.roll) {
        // Each gateway: a fresh one starts (≤ 30 s on a loaded machine), then the old one drains (≤ the drain window).
        await rollGateways(server, workers, workers * (30_000 + (options.drainMs ?? 10_000)));
        return { atMs, kind: 'roll-gateways', node: 0, downMs: Date.now() - t };
      }
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

/**
 * Three nodes on a private PostgreSQL and an own Redis; a fault hits one node, PostgreSQL or Redis (with `roll`:
 * every node in turn is drained and started again).
 */
export async function clusterTarget(options: TargetOptions = {}): Promise<Target> {
  const pgServer: PrivatePostgres = await startPrivatePostgres();
  let redis: OwnRedis | undefined;
  let nodes: TestNodes | undefined;
  const workers = options.workers ?? 0;
  try {
    redis = await startOwnRedis();
    nodes = await startNodes(3, redis.url, [workers, workers, workers], { SYNCHAT_POSTGRES_URL: pgServer.url, ...drainEnv(options) });
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
      if (options.roll) {
        // One node at a time, as an operator rolls a deployment: the others serve its clients meanwhile.
        for (const node of own.nodes.nodes) await drainAndRestart(() => node.server.stop(), node.server, () => node.restart());
        return { atMs, kind: 'roll-nodes', downMs: Date.now() - t };
      }
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
