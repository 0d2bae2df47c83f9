/**
 * The live capacity estimate of the admin dashboard (docs/capacity.md "Live estimate"): "how many more users can
 * this node take", from the node's own snapshots (src/ops/snapshot.ts) instead of the bench records that
 * `npm run capacity` fits. The costs come from the snapshots' deltas: CPU core-seconds per send, append and
 * delivery (the assumed split, scaled by least squares over one-second samples to what the node spends above its
 * idle cost), and memory per connection from RSS against connections. The
 * workload is the capacity model's (src/ops/capacity-model.ts `plan()`), so the arithmetic per user is the one
 * `npm run capacity` prints. Pure and browser-safe: the dashboard runs it on every new snapshot, with the
 * assumptions the operator edits.
 */
import { nnls, plan, type Costs, type NodeShape, type Workload } from './capacity-model.ts';
import type { NodeSnapshot } from './snapshot.ts';

/** One second (or so) of a node's activity, from two consecutive snapshots. */
export interface RateSample {
  /** The later snapshot's time, ms since the epoch. */
  at: number;
  /** Cores busy in the node's processes (CPU seconds ÷ wall seconds), summed over the processes seen in both. */
  cores: number;
  /** CPU cores of each process seen in both snapshots, by pid. */
  coresByPid: Record<number, number>;
  sendsPerSec: number;
  appendsPerSec: number;
  deliveriesPerSec: number;
  /** Long connections and parked long-polls at the later snapshot (a parked poll costs about a connection). */
  connections: number;
  /** RSS of every process at the later snapshot, bytes. */
  rssBytes: number;
}

/**
 * The rates between two snapshots of one node, or undefined when they cannot be compared: another node, the
 * node restarted (its counters began again), or no time passed.
 */
export function rateBetween(prev: NodeSnapshot, next: NodeSnapshot): RateSample | undefined {
  const seconds = (next.at - prev.at) / 1000;
  if (next.nodeId !== prev.nodeId || next.startedAt !== prev.startedAt || !(seconds > 0)) return undefined;
  const before = new Map(prev.processes.map((p) => [p.pid, p.cpuSeconds]));
  const coresByPid: Record<number, number> = {};
  let cores = 0;
  for (const p of next.processes) {
    const was = before.get(p.pid);
    // A process born between the two (a gateway replaced) has no baseline yet; one whose clock went back is another.
    if (was === undefined || p.cpuSeconds < was) continue;
    coresByPid[p.pid] = (p.cpuSeconds - was) / seconds;
    cores += coresByPid[p.pid]!;
  }
  const rate = (k: keyof NodeSnapshot['totals']) => Math.max(0, next.totals[k] - prev.totals[k]) / seconds;
  return {
    at: next.at,
    cores,
    coresByPid,
    sendsPerSec: rate('sends'),
    appendsPerSec: rate('appends'),
    deliveriesPerSec: rate('deliveries'),
    connections: connectionsOf(next),
    rssBytes: next.processes.reduce((sum, p) => sum + p.rssBytes, 0),
  };
}

/** Long connections and parked long-polls of a node. */
export function connectionsOf(s: NodeSnapshot): number {
  return s.processes.reduce((sum, p) => sum + p.connections.tcp + p.connections.ws + p.parkedPolls, 0);
}

/**
 * The heartbeat period a node's long connections agreed, on average: connections ÷ heartbeats per second (the
 * snapshot counts connections per period in seconds), or undefined without long connections.
 */
export function meanHeartbeatSec(s: NodeSnapshot): number | undefined {
  let count = 0;
  let perSec = 0;
  for (const [period, n] of Object.entries(s.heartbeats)) {
    const sec = Number(period);
    if (!(sec > 0) || !(n > 0)) continue;
    count += n;
    perSec += n / sec;
  }
  return count > 0 ? count / perSec : undefined;
}

/** What the operator assumes (the dashboard's form): the workload, the node's shape, and costs not measured live. */
export interface LiveAssumptions {
  /** The capacity model's workload; `users` is ignored (the estimate is per user). */
  workload: Workload;
  node: NodeShape;
  /** Kernel memory per socket (not in any process's RSS), bytes. */
  kernelBytesPerSocket: number;
  /** Appends/s one SQLite writer takes (a node on PostgreSQL has no such limit of its own). */
  maxAppendsPerSecPerWriter: number;
  /**
   * Costs used while the window has too little traffic (or too few connections) to measure them; the CPU costs'
   * split between sends, appends and deliveries is also the one the live fit scales.
   */
  fallback: { cpuPerSend: number; cpuPerAppend: number; cpuPerDelivery: number; bytesPerConn: number };
}

/**
 * Where a cost came from: measured in the window (`live`); measured but holding the idle cost too, because the
 * window had no quiet second to tell it apart (`live-bound`: an upper bound, so the room is a lower bound); or the
 * assumption used because the window could not tell (`assumed`).
 */
export type CostSource = 'live' | 'live-bound' | 'assumed';

/** The live answer. */
export interface LiveCapacity {
  costs: {
    cpuPerSend: number;
    cpuPerAppend: number;
    cpuPerDelivery: number;
    /**
     * Core-seconds per send with its appends and deliveries, in the mix sent now: what the window measures; 0
     * without sends now.
     */
    cpuPerMessageNow: number;
    /** Cores the node spends with no traffic: the mean of the window's quiet seconds (0 unless `cpuSource` is `live`). */
    idleCores: number;
    bytesPerConn: number;
    cpuSource: CostSource;
    memorySource: CostSource;
  };
  /** The node now (the mean of the last {@link RECENT_SAMPLES} samples; memory at the latest). */
  now: { busyCores: number; sendsPerSec: number; appendsPerSec: number; deliveriesPerSec: number; rssBytes: number; connections: number };
  /** Share of one node's usable resource (at the utilisation) used now, per resource. */
  loads: { cpu: number; memory: number; writer?: number };
  /** The same share taken by one more user of the workload at its peak. */
  perUser: { cpu: number; memory: number; writer?: number };
  /** Users of the workload each resource still has room for (Infinity: one user costs it nothing). */
  moreUsersBy: { cpu: number; memory: number; writer?: number };
  /** The resource that runs out first, and the users the node can still take (rounded down). */
  binding: 'cpu' | 'memory' | 'writer';
  moreUsers: number;
}

/** Samples averaged for "now": ten seconds smooth the one-second jitter of CPU and rates. */
export const RECENT_SAMPLES = 10;
/** A CPU fit needs this many samples with sends in them; fewer say more about noise than about sends. */
const MIN_BUSY_SAMPLES = 10;
/** The idle cost is measured from this many quiet samples (no send, append or delivery) or more. */
const MIN_QUIET_SAMPLES = 5;
/** A memory fit needs the connections to have moved this much within the window. */
const MIN_CONNECTION_SPREAD = 50;
/** The workload is planned for this many users and divided back: plan() rounds nothing but node counts. */
const PLANNED_USERS = 1_000_000;

/**
 * Estimates how many more users of the assumed workload this node can take: what is left of each resource (CPU
 * and memory at the planned utilisation; with `isSingleWriter`, the one SQLite writer's appends) divided by what
 * one user costs it at peak, with the costs measured from `samples` (oldest first, one node) where the window
 * allows and the fallback costs otherwise. `latest` is the node's newest snapshot.
 */
export function liveCapacity(samples: readonly RateSample[], latest: NodeSnapshot, a: LiveAssumptions, isSingleWriter: boolean): LiveCapacity {
  const cpu = fitCpuLive(samples, a.fallback) ?? { ...a.fallback, idleCores: 0, source: 'assumed' as CostSource };
  const fitted = fitBytesPerConn(samples);
  const bytesPerConn = fitted ?? a.fallback.bytesPerConn;
  const memorySource: CostSource = fitted === undefined ? 'assumed' : 'live';
  const recent = samples.slice(-RECENT_SAMPLES);
  const mean = (f: (s: RateSample) => number) => (recent.length ? recent.reduce((sum, s) => sum + f(s), 0) / recent.length : 0);
  const connections = connectionsOf(latest);
  const now = {
    busyCores: mean((s) => s.cores),
    sendsPerSec: mean((s) => s.sendsPerSec),
    appendsPerSec: mean((s) => s.appendsPerSec),
    deliveriesPerSec: mean((s) => s.deliveriesPerSec),
    rssBytes: latest.processes.reduce((sum, p) => sum + p.rssBytes, 0),
    connections,
  };
  const costs: Costs = {
    bytesPerConn,
    kernelBytesPerSocket: a.kernelBytesPerSocket,
    // The base is in the RSS measured now; per user only its connections count.
    baseBytes: 0,
    cpuPerSend: cpu.cpuPerSend,
    cpuPerAppend: cpu.cpuPerAppend,
    cpuPerDelivery: cpu.cpuPerDelivery,
    bytesPerDelivery: 0,
    maxAppendsPerSecPerWriter: a.maxAppendsPerSecPerWriter,
    sources: {},
  };
  const p = plan({ ...a.workload, users: PLANNED_USERS }, costs, a.node);
  const usable = { cores: a.node.cores * a.node.utilisation, memBytes: a.node.memBytes * a.node.utilisation };
  const loads = {
    cpu: now.busyCores / usable.cores,
    memory: (now.rssBytes + connections * a.kernelBytesPerSocket) / usable.memBytes,
    ...(isSingleWriter ? { writer: now.appendsPerSec / (a.maxAppendsPerSecPerWriter * a.node.utilisation) } : {}),
  };
  const perUser = {
    cpu: p.loads.cpu / PLANNED_USERS,
    memory: p.loads.memory / PLANNED_USERS,
    ...(isSingleWriter ? { writer: p.loads.writer / PLANNED_USERS } : {}),
  };
  const room = (load: number, one: number) => (one > 0 ? Math.max(0, 1 - load) / one : Infinity);
  const moreUsersBy = {
    cpu: room(loads.cpu, perUser.cpu),
    memory: room(loads.memory, perUser.memory),
    ...(isSingleWriter ? { writer: room(loads.writer!, perUser.writer!) } : {}),
  };
  const binding = (Object.keys(moreUsersBy) as LiveCapacity['binding'][]).reduce((x, y) => (moreUsersBy[y]! < moreUsersBy[x]! ? y : x));
  return {
    costs: {
      cpuPerSend: cpu.cpuPerSend,
      cpuPerAppend: cpu.cpuPerAppend,
      cpuPerDelivery: cpu.cpuPerDelivery,
      cpuPerMessageNow:
        now.sendsPerSec > 0 ? (now.sendsPerSec * cpu.cpuPerSend + now.appendsPerSec * cpu.cpuPerAppend + now.deliveriesPerSec * cpu.cpuPerDelivery) / now.sendsPerSec : 0,
      idleCores: cpu.idleCores,
      bytesPerConn,
      cpuSource: cpu.source,
      memorySource,
    },
    now,
    loads,
    perUser,
    moreUsersBy,
    binding,
    moreUsers: Math.floor(moreUsersBy[binding]!),
  };
}

/**
 * CPU core-seconds per send, append and delivery from the samples; undefined when fewer than
 * {@link MIN_BUSY_SAMPLES} samples had sends. The idle cost (timers, heartbeats, garbage collection) is the mean of
 * the quiet samples when the window has {@link MIN_QUIET_SAMPLES} of them. The busy ones then give one factor k by
 * least squares, cores − idle = k × (sends/s·a₀ + appends/s·b₀ + deliveries/s·c₀), where a₀, b₀, c₀ are the
 * assumed costs (by default the bench's fit), and the costs are k·a₀, k·b₀, k·c₀: the bench's split between the
 * three, scaled to what this node spends now. A live mix rarely varies enough to separate three costs — fitted
 * apart on a steady load, they jumped from sends to deliveries from one second to the next, and the estimate by a
 * factor of three with them — while their total for the mix seen is well measured. Steady traffic cannot tell the
 * idle cost from the traffic's either, so without quiet seconds the factor holds the idle cost too: an upper bound
 * (`live-bound`).
 */
function fitCpuLive(samples: readonly RateSample[], assumed: LiveAssumptions['fallback']): { cpuPerSend: number; cpuPerAppend: number; cpuPerDelivery: number; idleCores: number; source: CostSource } | undefined {
  const isQuiet = (s: RateSample) => s.sendsPerSec === 0 && s.appendsPerSec === 0 && s.deliveriesPerSec === 0;
  const busy = samples.filter((s) => s.sendsPerSec > 0);
  if (busy.length < MIN_BUSY_SAMPLES) return undefined;
  const quiet = samples.filter(isQuiet);
  const idle = quiet.length >= MIN_QUIET_SAMPLES ? quiet.reduce((sum, s) => sum + s.cores, 0) / quiet.length : 0;
  const [k] = nnls(
    busy.map((s) => [s.sendsPerSec * assumed.cpuPerSend + s.appendsPerSec * assumed.cpuPerAppend + s.deliveriesPerSec * assumed.cpuPerDelivery]),
    busy.map((s) => s.cores - idle),
  );
  if (!(k! > 0)) return undefined;
  return {
    idleCores: idle,
    cpuPerSend: k! * assumed.cpuPerSend,
    cpuPerAppend: k! * assumed.cpuPerAppend,
    cpuPerDelivery: k! * assumed.cpuPerDelivery,
    source: quiet.length >= MIN_QUIET_SAMPLES ? 'live' : 'live-bound',
  };
}

/**
 * RSS = base + connections·k over the samples, k ≥ 0; undefined unless the connections moved by
 * {@link MIN_CONNECTION_SPREAD} within the window and the slope came out positive. RSS holds garbage not yet
 * collected, so k leans high, as the bench's idle runs do (docs/capacity.md "The model").
 */
function fitBytesPerConn(samples: readonly RateSample[]): number | undefined {
  if (samples.length === 0) return undefined;
  const counts = samples.map((s) => s.connections);
  if (Math.max(...counts) - Math.min(...counts) < MIN_CONNECTION_SPREAD) return undefined;
  const [, k] = nnls(
    samples.map((s) => [1, s.connections]),
    samples.map((s) => s.rssBytes),
  );
  return k! > 0 ? k! : undefined;
}

/**
 * The dashboard's starting workload: `npm run capacity`'s defaults (docs/capacity.md "The workload"); the
 * heartbeat is replaced by the node's live mix when it has long connections.
 */
export const DEFAULT_WORKLOAD: Workload = { users: 0, online: 0.3, devices: 1.6, msgsPerUserDay: 60, peak: 4, groupShare: 0.5, groupSize: 50, heartbeatSec: 30 };

/** Share of a node's cores and memory planned for use, as `npm run capacity`'s `--utilisation` default. */
export const DEFAULT_UTILISATION = 0.7;

/**
 * Costs measured by the load tool, for what a window cannot measure: `npm run capacity`'s fit of bench/results on
 * 2026-12-03 (one SQLite node over TCP; docs/capacity.md "Worked answers"). Every one is editable on the page.
 */
export const BENCH_COSTS = {
  cpuPerSend: 1.15e-4, // core·s
  cpuPerAppend: 0,
  cpuPerDelivery: 3.09e-5, // core·s
  bytesPerConn: 4907, // B of process memory (idle runs, median)
  kernelBytesPerSocket: 4129, // B (slab growth per socket)
  maxAppendsPerSecPerWriter: 32_500, // a lower bound: the highest rate a passing step sustained
} as const;
