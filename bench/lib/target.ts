/**
 * The server a run drives: a Synchat server the bench starts itself (spawnServer; in cluster mode on fixed ports
 * with SYNCHAT_WORKERS gateway processes) — one node on SQLite or PostgreSQL (`--store`), or `--nodes N` nodes
 * on one PostgreSQL and one Redis —, the minimal `ws` relay baseline (bench/baseline/ws-relay.ts), or a running
 * server given by `--url` (its endpoints read from `/api/gateways`; `--server-pid` lets the bench sample its
 * memory and CPU). `--cpu-prof DIR` profiles the server's processes (V8 .cpuprofile files, written at exit).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processTree } from './monitor.ts';
import { spawnServer, type ServerProcess } from './proc.ts';
import { createBenchDatabase, DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL, otherDatabaseBackends, postgresPids, redisPids, redisVersion, type PgCounters } from './services.ts';
import type { Endpoint } from './sim-conn.ts';

/** A server under test. */
export interface Target {
  kind: 'synchat' | 'baseline' | 'url';
  /** Where setup calls (register, contacts, groups) go: the first node. */
  endpoint: Endpoint;
  /** Every node's endpoint when the target is several nodes (devices are spread over them round-robin); else absent. */
  endpoints?: Endpoint[];
  /** The server's processes now (primary and gateway children, of every node); empty when unknown. */
  pids(): number[];
  /**
   * Parts whose CPU a run accounts apart, by name: each node's process tree (`node0`, `node1`, …), `postgres`
   * (every PostgreSQL process of the machine), `postgresOtherDbs` (of those, other databases' backends: noise)
   * and `redis` (the redis-server on the Redis URL's port). Absent for the baseline and `--url`.
   */
  parts?: Record<string, () => number[]>;
  /** PostgreSQL's counters (WAL bytes, write transactions), when the target stores in PostgreSQL. */
  pgCounters?(): Promise<PgCounters>;
  /** What the nodes' PostgreSQL backends are doing now (BenchDatabase.backendStates), when it stores in PostgreSQL. */
  pgBackendStates?(): Promise<string[]>;
  /** Settings it was started with (every SYNCHAT_* the bench set, its defaults included), for the JSON record. */
  settings: Record<string, string | number>;
  stop(): Promise<void>;
}

/** A free-looking port pair below the ephemeral range (32768+), so client sockets never take it. */
function pickPorts(): { httpPort: number; tcpPort: number } {
  const httpPort = 10_000 + 2 * Math.floor(Math.random() * 10_000);
  return { httpPort, tcpPort: httpPort + 1 };
}

function endpointFor(httpPort: number, tcpPort: number): Endpoint {
  return { httpUrl: `http://127.0.0.1:${httpPort}`, tcpHost: '127.0.0.1', tcpPort, wsUrl: `ws://127.0.0.1:${httpPort}/ws` };
}

/** Starts a Synchat server with `workers` gateway processes (0 = one process) and extra SYNCHAT_* settings. */
export async function startSynchat(workers: number, env: Record<string, string> = {}, execArgv: string[] = []): Promise<Target> {
  const ports = pickPorts();
  const server = await spawnServer({ SYNCHAT_WORKERS: String(workers), ...env }, { ...ports, execArgv });
  // Gateways fork after the primary answers; give them a moment so the first samples include them.
  await new Promise((r) => setTimeout(r, workers > 0 ? 1500 : 100));
  return {
    kind: 'synchat',
    endpoint: endpointFor(server.httpPort, server.tcpPort),
    pids: () => processTree(server.pid),
    // PostgreSQL and Redis serve no SQLite node: their CPU here is the machine's background (other work on them).
    parts: { node0: () => processTree(server.pid), postgres: postgresPids, redis: () => redisPids(DEFAULT_REDIS_URL) },
    settings: { workers, store: 'sqlite', nodes: 1, ...server.settings },
    stop: () => server.stop(),
  };
}

/** What {@link startNodes} starts. */
export interface NodesOptions {
  nodes: number;
  /** Gateway processes per node (`SYNCHAT_WORKERS`). */
  workers: number;
  /** Any database of the PostgreSQL server; the bench creates its own database there. */
  postgresUrl: string;
  /** Redis for two nodes or more; '' with one node (it runs the in-process bus). */
  redisUrl: string;
  /** Node i listens on HTTP basePort + 10·i and TCP basePort + 10·i + 1. */
  basePort: number;
  env?: Record<string, string>;
  execArgv?: string[];
}

/**
 * Starts `nodes` Synchat nodes as one service, as `npm run cluster` does (PROTOCOL.md "Several nodes"): a fresh
 * database `synchat_bench_<time>` (the first node migrates it, then the others start), the same PostgreSQL and
 * (from two nodes) Redis URLs, its own ports and data folder each, one shared media folder. With Redis it waits
 * until `/api/gateways` on the first node lists every node (the directory works) and records how many gateways
 * of other services the same Redis lists (a neighbour sharing it shares its pub/sub too). Stopping stops every
 * node, then drops the database and the media folder.
 */
export async function startNodes(opt: NodesOptions): Promise<Target> {
  const db = await createBenchDatabase(opt.postgresUrl);
  const mediaDir = mkdtempSync(join(tmpdir(), 'synchat-bench-media-'));
  const servers: ServerProcess[] = [];
  const stop = async () => {
    await Promise.allSettled(servers.map((s) => s.stop()));
    await db.drop();
    rmSync(mediaDir, { recursive: true, force: true });
  };
  try {
    const env: Record<string, string> = {
      SYNCHAT_WORKERS: String(opt.workers),
      SYNCHAT_POSTGRES_URL: db.url,
      SYNCHAT_MEDIA_DIR: mediaDir,
      ...(opt.redisUrl ? { SYNCHAT_REDIS_URL: opt.redisUrl } : {}),
      ...opt.env,
    };
    const start = (i: number) => spawnServer(env, { httpPort: opt.basePort + 10 * i, tcpPort: opt.basePort + 10 * i + 1, execArgv: opt.execArgv }).then((s) => void servers.push(s));
    await start(0);
    await Promise.all(Array.from({ length: opt.nodes - 1 }, (_, i) => start(i + 1)));
    servers.sort((a, b) => a.httpPort - b.httpPort);
    // Gateways fork after the primary answers; give them a moment so the first samples include them.
    await new Promise((r) => setTimeout(r, opt.workers > 0 ? 1500 : 100));
    const foreignGateways = opt.redisUrl ? await waitForDirectory(servers) : 0;
    const parts: Record<string, () => number[]> = {};
    servers.forEach((s, i) => (parts[`node${i}`] = () => processTree(s.pid)));
    parts.postgres = postgresPids;
    parts.postgresOtherDbs = () => otherDatabaseBackends(db.name);
    parts.redis = () => redisPids(opt.redisUrl || DEFAULT_REDIS_URL);
    const endpoints = servers.map((s) => endpointFor(s.httpPort, s.tcpPort));
    return {
      kind: 'synchat',
      endpoint: endpoints[0]!,
      ...(opt.nodes > 1 ? { endpoints } : {}),
      pids: () => servers.flatMap((s) => processTree(s.pid)),
      parts,
      pgCounters: () => db.counters(),
      pgBackendStates: () => db.backendStates(),
      settings: {
        workers: opt.workers,
        store: 'postgres',
        nodes: opt.nodes,
        postgresVersion: db.version,
        ...(opt.redisUrl ? { redisVersion: await redisVersion(opt.redisUrl), foreignGateways } : {}),
        basePort: opt.basePort,
        ...servers[0]!.settings,
      },
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

/**
 * Waits (≤ 30 s) until the first node's `/api/gateways` lists every node's HTTP gateway; returns how many
 * gateways it lists that are not ours (another service on the same Redis).
 */
async function waitForDirectory(servers: readonly ServerProcess[]): Promise<number> {
  const ours = new Set(servers.map((s) => `http://127.0.0.1:${s.httpPort}`));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = (await (await fetch(`${servers[0]!.url}/api/gateways`)).json()) as { gateways: { transport: string; url: string }[] };
    const listed = r.gateways.filter((g) => g.transport === 'http').map((g) => g.url.replace(/\/$/, ''));
    const foreign = listed.filter((u) => !ours.has(u)).length;
    if (listed.length - foreign === servers.length) {
      if (foreign > 0) console.warn(`warning: the directory on ${servers[0]!.url} also lists ${foreign} gateway(s) of another service on the same Redis`);
      return foreign;
    }
    if (Date.now() > deadline) throw new Error(`/api/gateways on ${servers[0]!.url} lists ${listed.length - foreign} of ${servers.length} nodes after 30 s: the nodes do not see each other through Redis`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** Starts the baseline relay (bench/baseline/ws-relay.ts) in its own process. */
export async function startBaseline(): Promise<Target> {
  const { httpPort } = pickPorts();
  const script = fileURLToPath(new URL('../baseline/ws-relay.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script, '--port', String(httpPort)], { stdio: ['ignore', 'inherit', 'inherit'] });
  const url = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`baseline relay exited with ${child.exitCode}`);
    try {
      if ((await fetch(url + '/api/gateways')).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('baseline relay did not start within 20 s');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    kind: 'baseline',
    endpoint: endpointFor(httpPort, 0),
    pids: () => processTree(child.pid!),
    settings: { relay: 'ws' },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Uses a running server: endpoints from its gateway directory. */
export async function useUrl(url: string, serverPid?: number): Promise<Target> {
  const r = (await (await fetch(new URL('/api/gateways', url))).json()) as { gateways: { transport: string; url: string }[] };
  const byKind = Object.fromEntries(r.gateways.map((g) => [g.transport, g.url]));
  const tcp = byKind.tcp ? new URL(byKind.tcp) : undefined;
  return {
    kind: 'url',
    endpoint: {
      httpUrl: url.replace(/\/$/, ''),
      tcpHost: tcp?.hostname ?? '127.0.0.1',
      tcpPort: tcp ? Number(tcp.port) : 0,
      wsUrl: byKind.ws ?? url.replace(/^http/, 'ws').replace(/\/$/, '') + '/ws',
    },
    pids: () => (serverPid ? processTree(serverPid) : []),
    settings: { url },
    async stop() {},
  };
}

/**
 * Starts what the options ask for: `--url` (a running server), else Synchat with `--server-workers` (per node)
 * and `--password-log2n` (scrypt cost; the bench's default is in BENCH_SERVER_ENV, proc.ts), stored in
 * `--store sqlite|postgres` (default sqlite) on `--nodes N` (default 1; two or more imply PostgreSQL and Redis).
 * PostgreSQL runs get a fresh database on the server of `--postgres-url`; several nodes share `--redis-url` and
 * listen from `--base-port` (default: a random free-looking one) in steps of 10.
 */
export async function startTarget(o: Record<string, string>, env: Record<string, string> = {}): Promise<Target> {
  if (o.url) return useUrl(o.url, o['server-pid'] ? Number(o['server-pid']) : undefined);
  // `--cpu-prof DIR`: every server process writes a V8 CPU profile there when it exits (gateways inherit the
  // primary's execArgv through node:cluster; Node 20 refuses --cpu-prof in NODE_OPTIONS).
  const execArgv = o['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${o['cpu-prof']}`] : [];
  const scrypt: Record<string, string> = o['password-log2n'] ? { SYNCHAT_PASSWORD_LOG2N: o['password-log2n'] } : {};
  const workers = Number(o['server-workers'] ?? 2);
  const { store, nodes } = storeAndNodes(o);
  if (store === 'sqlite') return startSynchat(workers, { ...scrypt, ...env }, execArgv);
  return startNodes({
    nodes,
    workers,
    postgresUrl: o['postgres-url'] ?? DEFAULT_POSTGRES_URL,
    redisUrl: nodes > 1 ? (o['redis-url'] ?? DEFAULT_REDIS_URL) : '',
    basePort: o['base-port'] ? Number(o['base-port']) : pickPorts().httpPort,
    env: { ...scrypt, ...env },
    execArgv,
  });
}

/** `--store` and `--nodes`, checked: several nodes share one store, so they need PostgreSQL (and Redis). */
export function storeAndNodes(o: Record<string, string>): { store: 'sqlite' | 'postgres'; nodes: number } {
  const nodes = Number(o.nodes ?? 1);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 16) throw new Error(`--nodes must be 1 to 16 (got ${o.nodes})`);
  const store = o.store ?? (nodes > 1 ? 'postgres' : 'sqlite');
  if (store !== 'sqlite' && store !== 'postgres') throw new Error(`--store must be sqlite or postgres (got ${store})`);
  if (store === 'sqlite' && nodes > 1) throw new Error('--nodes 2 or more share one store: use --store postgres (the default then)');
  return { store, nodes };
}
