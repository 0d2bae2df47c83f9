/**
 * What every scenario does the same way: start the target and the monitors, register users, fork workers and
 * connect devices with a progress line, gather the workers' counters, and close everything it started.
 */
import { encodeHistogram, mergeHistograms, summarize, type LatencySummary } from './hist.ts';
import { kernelSlabBytes, TreeMonitor, type UsageSample } from './monitor.ts';
import { sourceAddresses, WorkerPool, workersFor, type DeviceSpec } from './pool.ts';
import { withProgress } from './progress.ts';
import { registerUsers, type SimUser } from './setup.ts';
import type { Transport } from './sim-conn.ts';
import { startBaseline, startTarget, type Target } from './target.ts';

/** A running scenario: target, client workers and monitors. */
export interface Run {
  target: Target;
  transport: Transport;
  serverMon: TreeMonitor;
  clientMon: TreeMonitor;
  /** One monitor per part of the target whose CPU is accounted apart (Target.parts: nodes, PostgreSQL, Redis). */
  partMons: Map<string, TreeMonitor>;
  pool?: WorkerPool;
  /** Which worker holds each device (connId → worker index), as connectDevices spread them. */
  deviceWorker: Map<number, number>;
  /** Which node each device connects to (connId → node index), as connectDevices spread them. */
  deviceNode: Map<number, number>;
  /** Load steps run so far (each step's messages carry its number). */
  stepCount: number;
  close(): Promise<void>;
}

const openRuns = new Set<Run>();
let isStopping = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    // Ctrl-C or a timeout: stop the servers and workers this run started (only those), then exit.
    if (isStopping) process.exit(130);
    isStopping = true;
    process.stderr.write(`\n${sig}: stopping the servers and workers this run started…\n`);
    void Promise.allSettled([...openRuns].map((r) => r.close())).then(() => process.exit(130));
  });

/** Starts the target (`kind` baseline → the ws relay) and the server and client monitors. */
export async function openRun(o: Record<string, string>, kind: 'synchat' | 'baseline', env: Record<string, string> = {}): Promise<Run> {
  const transport = (kind === 'baseline' ? 'ws' : (o.transport ?? 'tcp')) as Transport;
  if (!['tcp', 'ws', 'longpoll'].includes(transport)) throw new Error(`--transport must be tcp, ws or longpoll (got ${transport})`);
  const target = kind === 'baseline' ? await startBaseline() : await startTarget(o, env);
  // Printed, and recorded as each result's targetSettings: a lowered scrypt cost must never go unnoticed.
  console.log(`target ${target.kind}: ${Object.entries(target.settings).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  return runOn(target, transport);
}

/** A run against a target already started (tests: a server in-process, behind a fault-injecting relay); closing the run stops it. */
export function runOn(target: Target, transport: Transport): Run {
  const serverMon = new TreeMonitor(() => target.pids()).start();
  const partMons = new Map(Object.entries(target.parts ?? {}).map(([name, pids]) => [name, new TreeMonitor(pids).start()]));
  let pool: WorkerPool | undefined;
  const run: Run = {
    target,
    transport,
    serverMon,
    partMons,
    clientMon: new TreeMonitor(() => [process.pid, ...(pool?.pids ?? [])]).start(),
    deviceWorker: new Map(),
    deviceNode: new Map(),
    stepCount: 0,
    get pool() {
      return pool;
    },
    set pool(p) {
      pool = p;
    },
    async close() {
      openRuns.delete(run);
      serverMon.stop();
      for (const m of partMons.values()) m.stop();
      run.clientMon.stop();
      await run.pool?.close();
      await target.stop();
    },
  };
  openRuns.add(run);
  return run;
}

/** Registers `count` users named `<prefix><i>` with `devices` sessions each, with a progress line. */
export async function population(run: Run, prefix: string, count: number, devices = 1): Promise<SimUser[]> {
  let done = 0;
  const names = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
  return withProgress('register+login', count, () => ({ done }), () => registerUsers(run.target.endpoint.httpUrl, names, devices, (n) => (done = n)));
}

/**
 * Forks enough workers for `connections` sockets (or `--client-workers`). `--client-cpu-prof DIR`: every worker
 * writes a V8 CPU profile there when it exits (the load tool's own hot path, as `--cpu-prof` does for the server).
 */
export async function startWorkers(run: Run, o: Record<string, string>, connections: number): Promise<WorkerPool> {
  const count = o['client-workers'] ? Number(o['client-workers']) : workersFor(connections);
  const execArgv = o['client-cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${o['client-cpu-prof']}`] : [];
  run.pool = await WorkerPool.start(count, run.transport, run.target.endpoints ?? [run.target.endpoint], sourceAddresses(connections), execArgv);
  return run.pool;
}

/** Result of connecting a set of devices. */
export interface ConnectResult {
  connected: number;
  failed: number;
  firstError: string;
  elapsedMs: number;
  perSecond: number;
  auth: LatencySummary;
}

/**
 * Devices spread over `nodes` nodes round-robin: device i → node i mod N, unless its spec names one. Consecutive
 * devices, such as a direct pair's two users, land on different nodes.
 */
export function spreadOverNodes(specs: readonly DeviceSpec[], nodes: number): DeviceSpec[] {
  return specs.map((s, k) => (s.node === undefined && nodes > 1 ? { ...s, node: k % nodes } : s));
}

/**
 * Spreads `specs` over the workers (device i → worker i mod W) and over the target's nodes
 * ({@link spreadOverNodes}), and connects them, with a progress line.
 */
export async function connectDevices(run: Run, specs: DeviceSpec[], concurrencyPerWorker: number, phase = 'connect+AUTH'): Promise<ConnectResult> {
  const pool = run.pool!;
  const W = pool.children.length;
  specs = spreadOverNodes(specs, run.target.endpoints?.length ?? 1);
  const counts = new Array<number>(W).fill(0);
  pool.onProgress = (w, d) => (counts[w - 1] = Number(d.connected ?? d.reconnected ?? 0));
  const t0 = performance.now();
  specs.forEach((s, k) => {
    run.deviceWorker.set(s.id, k % W);
    run.deviceNode.set(s.id, s.node ?? 0);
  });
  const answers = await withProgress(phase, specs.length, () => ({ done: counts.reduce((a, b) => a + b, 0), text: `server ${run.serverMon.samples.at(-1)?.rssMiB ?? 0} MiB` }), () =>
    pool.all((i) => ({ cmd: 'connect', conns: specs.filter((_, k) => k % W === i), concurrency: concurrencyPerWorker })),
  );
  const elapsedMs = performance.now() - t0;
  const connected = answers.reduce((a, r) => a + r.connected, 0);
  return {
    connected,
    failed: answers.reduce((a, r) => a + r.failed, 0),
    firstError: answers.map((r) => r.firstError).find(Boolean) ?? '',
    elapsedMs: Math.round(elapsedMs),
    perSecond: Math.round(connected / (elapsedMs / 1000)),
    auth: summarize(mergeHistograms(answers.map((r) => r.authHist))),
  };
}

/** Counters of every worker since the last reset, merged. */
export interface DeliveryStats {
  /** Message entries from other users that devices applied (once per log position). */
  deliveries: number;
  /** Same as `deliveries` (applied entries are unique per log position). */
  uniqueDeliveries: number;
  /** Message entries that came off the wire again without being asked for (a second PUSH, a SYNC page entry at or below the asked key). */
  duplicates: number;
  /** Own messages applied by the sender's devices. */
  echoes: number;
  latency: LatencySummary;
  latencyHist: string;
  bytesIn: number;
  clientCpuSeconds: number;
  open: number;
}

/** Gathers (and with `reset`, zeroes) the workers' delivery counters. */
export async function deliveryStats(run: Run, reset: boolean): Promise<DeliveryStats> {
  const answers = await run.pool!.all(() => ({ cmd: 'stats', reset }));
  const h = mergeHistograms(answers.map((a) => a.recvHist));
  return {
    deliveries: answers.reduce((a, r) => a + r.deliveries, 0),
    uniqueDeliveries: answers.reduce((a, r) => a + r.uniqueDeliveries, 0),
    duplicates: answers.reduce((a, r) => a + r.dups, 0),
    echoes: answers.reduce((a, r) => a + r.echoes, 0),
    latency: summarize(h),
    latencyHist: encodeHistogram(h),
    bytesIn: answers.reduce((a, r) => a + r.bytesIn, 0),
    clientCpuSeconds: answers.reduce((a, r) => a + r.cpuSeconds, 0),
    open: answers.reduce((a, r) => a + r.open, 0),
  };
}

/** Waits `ms`, sampling the monitors. */
export function settle(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resource use of one monitored set of processes over a run. */
export interface Usage {
  peakRssMiB: number;
  samples: UsageSample[];
}

/** Server, client and per-part (nodes, PostgreSQL, Redis) resource use over the run, for the JSON record. */
export function usage(run: Run): { server: Usage; client: Usage; parts: Record<string, Usage> } {
  const of = (m: TreeMonitor): Usage => ({ peakRssMiB: +(m.peakRssBytes / 2 ** 20).toFixed(1), samples: m.samples });
  return { server: of(run.serverMon), client: of(run.clientMon), parts: Object.fromEntries([...run.partMons].map(([name, m]) => [name, of(m)])) };
}

/** Mean cores used by a monitor's samples between two times (seconds since its start); `hottest`: of the busiest process. */
export function meanCores(samples: readonly UsageSample[], fromT: number, toT: number, field: 'cpuCores' | 'hottestCores' = 'cpuCores'): number {
  const s = samples.filter((x) => x.t > fromT && x.t <= toT);
  return s.length ? +(s.reduce((a, x) => a + x[field], 0) / s.length).toFixed(2) : 0;
}

export { kernelSlabBytes };
