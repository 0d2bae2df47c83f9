/**
 * The capacity model: what a workload (users, online share, devices, messages per user per day, peak factor,
 * group share and size) needs in cores, memory, nodes, storage writes, bus traffic and bandwidth, given the costs
 * measured on this machine (`fitCosts` in bench/capacity.ts reads them from the bench JSON records). When one SQLite node is not
 * enough and runs of several nodes were measured, it lays out the several-node deployment: nodes, PostgreSQL
 * (primaries, each with a standby) and Redis instances. Pure arithmetic, so a test can check it against a
 * hand-computed case. docs/capacity.md explains every formula.
 */

/** The workload. */
export interface Workload {
  users: number;
  /** Share of devices online (holding a connection) at peak. */
  online: number;
  /** Devices per user. */
  devices: number;
  msgsPerUserDay: number;
  /** Peak rate / average rate. */
  peak: number;
  /** Share of messages sent into groups. */
  groupShare: number;
  /** Members of an average group. */
  groupSize: number;
  /** Heartbeat period, seconds (with `heartbeatMix`: its effective period, 1 ÷ Σ share ÷ period). */
  heartbeatSec: number;
  /**
   * Devices on different heartbeat periods (docs/capacity.md "Heartbeat mix"): e.g. web at 27 s and mobile at
   * 300 s, shares of the connections summing to 1. When given it replaces `heartbeatSec` in the arithmetic.
   */
  heartbeatMix?: readonly HeartbeatShare[];
}

/** A share of the connections heartbeating at one period. */
export interface HeartbeatShare {
  /** Heartbeat period, seconds. */
  sec: number;
  /** Share of the connections, 0–1. */
  share: number;
}

/**
 * Heartbeats per second of one connection, averaged over the mix (Σ share ÷ period), and the formula's terms: the
 * rates add, not the periods (half the devices at 27 s and half at 300 s send 1 ÷ 49.5 s, not 1 ÷ 163.5 s).
 */
export function heartbeatsPerConnSec(w: Pick<Workload, 'heartbeatSec' | 'heartbeatMix'>): { rate: number; terms: string } {
  if (!w.heartbeatMix?.length) return { rate: 1 / w.heartbeatSec, terms: `1 ÷ ${w.heartbeatSec}` };
  return {
    rate: w.heartbeatMix.reduce((sum, m) => sum + m.share / m.sec, 0),
    terms: `(${w.heartbeatMix.map((m) => `${m.share} ÷ ${m.sec}`).join(' + ')})`,
  };
}

/** Costs measured on one machine. */
export interface Costs {
  /** Server memory per connection (process), bytes. */
  bytesPerConn: number;
  /** Kernel memory per server socket, bytes. */
  kernelBytesPerSocket: number;
  /** Memory of a server with no connections (primary + gateways), bytes. */
  baseBytes: number;
  /** CPU core-seconds per accepted send (validation, dedupe, commit share), apart from its appends and deliveries. */
  cpuPerSend: number;
  /** CPU core-seconds per log append (one entry in one user's log). */
  cpuPerAppend: number;
  /** CPU core-seconds per delivery (one entry to one online device). */
  cpuPerDelivery: number;
  /** Bytes on the wire per delivery (packet header + entry JSON). */
  bytesPerDelivery: number;
  /**
   * CPU core-seconds per heartbeat (a HEARTBEAT read and its HEARTBEAT_ACK written; BENCHMARKS.md "Issue 13");
   * absent: heartbeats cost no CPU in the plan.
   */
  cpuPerHeartbeat?: number;
  /** Log appends per second one core process (the single SQLite writer) sustained. */
  maxAppendsPerSecPerWriter: number;
  /** Costs of several nodes on PostgreSQL and Redis; absent when no such runs were recorded. */
  cluster?: ClusterCosts;
  /** Where each figure came from. */
  sources: Record<string, string>;
}

/**
 * Costs of several nodes sharing PostgreSQL and Redis (PROTOCOL.md "Several nodes"), fitted from the runs on
 * PostgreSQL (one node and several) and of several nodes.
 */
export interface ClusterCosts {
  /** Node CPU core-seconds per send, per append and per delivery, from the runs of several nodes (all nodes' processes). */
  cpuPerSend: number;
  cpuPerAppend: number;
  cpuPerDelivery: number;
  /** PostgreSQL CPU core-seconds per message (its share of a transaction) and per log append (a row, its index entries, a heads update). */
  pgCpuPerMsg: number;
  pgCpuPerAppend: number;
  /** WAL bytes PostgreSQL writes per message (its message row, session updates) and per log append (a log row, a heads update). */
  pgWalBytesPerMsg: number;
  pgWalBytesPerAppend: number;
  /** The highest appends/s one PostgreSQL server took in a passing step here (a lower bound of it). */
  pgMaxAppendsPerSec: number;
  /** Redis CPU core-seconds per message and per log append (a PUBLISH per user with news; a fan-out's, per member in a script). */
  redisCpuPerMsg: number;
  redisCpuPerAppend: number;
}

/** The shape of a PostgreSQL server; Redis runs its commands on one thread, so an instance is one core. */
export interface DbShape {
  /** Cores of one PostgreSQL server (a primary; each has a standby of the same shape). */
  pgCores: number;
}

/** A node's shape. */
export interface NodeShape {
  cores: number;
  memBytes: number;
  /** Largest share of cores and memory planned for use (headroom for bursts and GC). */
  utilisation: number;
}

/** One line of shown arithmetic. */
export interface Step {
  what: string;
  formula: string;
  value: number;
  unit: string;
}

/** The answer. */
export interface Plan {
  steps: Step[];
  connections: number;
  msgsPerSecPeak: number;
  appendsPerSec: number;
  deliveriesPerSec: number;
  cores: number;
  memBytes: number;
  nodesByCpu: number;
  nodesByMemory: number;
  nodes: number;
  /**
   * The resource with the highest load relative to one unit of it: a node (CPU, memory), the one SQLite writer
   * (one node), or, with several nodes, a PostgreSQL primary or a Redis instance.
   */
  binding: 'cpu' | 'memory' | 'writer' | 'postgres' | 'redis';
  /** Loads behind `binding` (1 = one unit full at utilisation); `postgres` and `redis` only with several nodes. */
  loads: { cpu: number; memory: number; writer: number; postgres?: number; redis?: number };
  /** With several nodes (one SQLite node is not enough and cluster costs are known): the other tiers. */
  cluster?: ClusterPlan;
  /** Whether one SQLite writer could take the appends; else PostgreSQL (docs/scaling.md). */
  isSingleWriterEnough: boolean;
  storageWritesPerSec: number;
  busPublishesPerSec: number;
  bandwidthBitsPerSec: number;
}

/** The PostgreSQL and Redis tiers of a several-node plan. */
export interface ClusterPlan {
  pgBusyCores: number;
  /** PostgreSQL primaries, the users partitioned by uin between them when more than one; each has a standby. */
  pgPrimaries: number;
  pgWalBytesPerSec: number;
  redisBusyCores: number;
  /** Redis instances of one core, the users' channels partitioned by uin between them when more than one. */
  redisInstances: number;
}

/** A PostgreSQL server of 16 cores: a common database machine (only the arithmetic, nothing measured, uses it). */
export const DEFAULT_DB_SHAPE: DbShape = { pgCores: 16 };

const HEARTBEAT_BYTES = 32; // HEARTBEAT + HEARTBEAT_ACK, 16-byte headers, no body

/**
 * Computes the plan, keeping every intermediate figure with its formula: first as one node on SQLite; when that
 * needs more than one node or more than the one writer, and `c.cluster` is known, as several nodes on PostgreSQL
 * and Redis (node CPU from the several-node runs, plus the PostgreSQL and Redis tiers).
 */
export function plan(w: Workload, c: Costs, node: NodeShape, db: DbShape = DEFAULT_DB_SHAPE): Plan {
  const steps: Step[] = [];
  const s = (what: string, formula: string, value: number, unit: string) => {
    steps.push({ what, formula, value, unit });
    return value;
  };
  const connections = s('connections', `users × devices × online = ${w.users} × ${w.devices} × ${w.online}`, w.users * w.devices * w.online, 'connections');
  const avg = s('average msgs/s', `users × msgs/day ÷ 86400 = ${w.users} × ${w.msgsPerUserDay} ÷ 86400`, (w.users * w.msgsPerUserDay) / 86400, 'msgs/s');
  const m = s('peak msgs/s', `average × peak = ${fmt(avg)} × ${w.peak}`, avg * w.peak, 'msgs/s');
  const appendsPerMsg = s('log appends per message', `(1 − g) × 2 + g × G = ${fmt(1 - w.groupShare)} × 2 + ${w.groupShare} × ${w.groupSize}`, (1 - w.groupShare) * 2 + w.groupShare * w.groupSize, 'appends');
  const onlineDevices = w.devices * w.online;
  // The sender's own devices get it too (PROTOCOL.md: every device, the sending one included).
  const ownDevices = 1 + (w.devices - 1) * w.online;
  const deliveriesPerMsg = s(
    'deliveries per message',
    `(1 − g) × d·on + g × (G − 1) × d·on + 1 + (d − 1)·on = ${fmt(1 - w.groupShare)} × ${fmt(onlineDevices)} + ${w.groupShare} × ${w.groupSize - 1} × ${fmt(onlineDevices)} + ${fmt(ownDevices)}`,
    (1 - w.groupShare) * onlineDevices + w.groupShare * (w.groupSize - 1) * onlineDevices + ownDevices,
    'deliveries',
  );
  const appends = s('appends/s', `peak msgs/s × appends per message = ${fmt(m)} × ${fmt(appendsPerMsg)}`, m * appendsPerMsg, 'appends/s');
  const deliveries = s('deliveries/s', `peak msgs/s × deliveries per message = ${fmt(m)} × ${fmt(deliveriesPerMsg)}`, m * deliveriesPerMsg, 'deliveries/s');
  const hb = heartbeatsPerConnSec(w);
  const heartbeats = s('heartbeats/s', `connections × Σ share ÷ heartbeat = ${fmt(connections)} × ${hb.terms}`, w.heartbeatMix?.length ? connections * hb.rate : connections / w.heartbeatSec, 'heartbeats/s');
  // Heartbeats cost a node the same per heartbeat on one node or several (one read and one write of 16 bytes).
  const hbCpu = c.cpuPerHeartbeat ?? 0;
  const hbTerm = hbCpu ? { names: ` + heartbeats/s × ${sci(hbCpu)}`, values: ` + ${fmt(heartbeats)} × ${sci(hbCpu)}`, cores: heartbeats * hbCpu } : { names: '', values: '', cores: 0 };
  const busyCores = s(
    'busy cores at peak',
    `msgs/s × ${sci(c.cpuPerSend)} + appends/s × ${sci(c.cpuPerAppend)} + deliveries/s × ${sci(c.cpuPerDelivery)}${hbTerm.names} = ${fmt(m)} × ${sci(c.cpuPerSend)} + ${fmt(appends)} × ${sci(c.cpuPerAppend)} + ${fmt(deliveries)} × ${sci(c.cpuPerDelivery)}${hbTerm.values}`,
    m * c.cpuPerSend + appends * c.cpuPerAppend + deliveries * c.cpuPerDelivery + hbTerm.cores,
    'cores',
  );
  const cores = s('cores needed', `busy cores ÷ utilisation = ${fmt(busyCores)} ÷ ${node.utilisation}`, busyCores / node.utilisation, 'cores');
  const connMem = s('connection memory', `connections × (process + kernel) = ${fmt(connections)} × (${fmt(c.bytesPerConn)} + ${fmt(c.kernelBytesPerSocket)}) B`, connections * (c.bytesPerConn + c.kernelBytesPerSocket), 'bytes');
  const nodesByCpu = s('nodes by CPU', `⌈cores ÷ node cores⌉ = ⌈${fmt(cores)} ÷ ${node.cores}⌉`, Math.max(1, Math.ceil(cores / node.cores)), 'nodes');
  // Each node also carries its own base memory.
  const nodesByMemory = s(
    'nodes by memory',
    `⌈connection memory ÷ (node memory × utilisation − base)⌉ = ⌈${gib(connMem)} ÷ (${gib(node.memBytes)} × ${node.utilisation} − ${gib(c.baseBytes)})⌉`,
    Math.max(1, Math.ceil(connMem / (node.memBytes * node.utilisation - c.baseBytes))),
    'nodes',
  );
  const nodes = Math.max(nodesByCpu, nodesByMemory);
  const memBytes = s('memory needed', `connection memory + nodes × base = ${gib(connMem)} + ${nodes} × ${gib(c.baseBytes)}`, connMem + nodes * c.baseBytes, 'bytes');
  const storageWrites = s('storage rows written/s', `appends/s + msgs/s (message row) = ${fmt(appends)} + ${fmt(m)}`, appends + m, 'rows/s');
  const isSingleWriterEnough = appends <= c.maxAppendsPerSecPerWriter * node.utilisation;
  const writerLoad = s('single SQLite writer load', `appends/s ÷ (measured ${fmt(c.maxAppendsPerSecPerWriter)} × ${node.utilisation})`, appends / (c.maxAppendsPerSecPerWriter * node.utilisation), 'fraction');
  // Redis runs one PUBLISH per log an entry lands in: a news event on the user's channel, and a group's fan-out
  // event sent once per commit but copied to each member's channel by a script in Redis (src/bus/redis); a batch
  // merges one user's events, so fewer in practice.
  const bus = s('Redis PUBLISHes/s (several nodes)', `appends/s = ${fmt(appends)}`, appends, 'publishes/s');
  const bw = s(
    'bandwidth out',
    `(deliveries/s × ${fmt(c.bytesPerDelivery)} B + heartbeats/s × ${HEARTBEAT_BYTES} B) × 8 = (${fmt(deliveries)} × ${fmt(c.bytesPerDelivery)} + ${fmt(heartbeats)} × ${HEARTBEAT_BYTES}) × 8`,
    (deliveries * c.bytesPerDelivery + heartbeats * HEARTBEAT_BYTES) * 8,
    'bit/s',
  );
  const onePlan: Plan = {
    steps,
    connections,
    msgsPerSecPeak: m,
    appendsPerSec: appends,
    deliveriesPerSec: deliveries,
    cores,
    memBytes,
    nodesByCpu,
    nodesByMemory,
    nodes,
    ...binding({ cpu: cores / node.cores, memory: connMem / (node.memBytes * node.utilisation - c.baseBytes), writer: writerLoad }),
    isSingleWriterEnough,
    storageWritesPerSec: storageWrites,
    busPublishesPerSec: bus,
    bandwidthBitsPerSec: bw,
  };
  if ((nodes === 1 && isSingleWriterEnough) || !c.cluster) return onePlan;
  const k = c.cluster;
  const u = node.utilisation;
  s('— several nodes', `one SQLite node is not enough (${nodes} node(s), writer load ${fmt(writerLoad)}): nodes on PostgreSQL + Redis`, nodes, 'nodes');
  const clusterBusy = s(
    'busy node cores at peak (several nodes)',
    `msgs/s × ${sci(k.cpuPerSend)} + appends/s × ${sci(k.cpuPerAppend)} + deliveries/s × ${sci(k.cpuPerDelivery)}${hbTerm.names} = ${fmt(m)} × ${sci(k.cpuPerSend)} + ${fmt(appends)} × ${sci(k.cpuPerAppend)} + ${fmt(deliveries)} × ${sci(k.cpuPerDelivery)}${hbTerm.values}`,
    m * k.cpuPerSend + appends * k.cpuPerAppend + deliveries * k.cpuPerDelivery + hbTerm.cores,
    'cores',
  );
  const clusterCores = s('node cores needed', `busy ÷ utilisation = ${fmt(clusterBusy)} ÷ ${u}`, clusterBusy / u, 'cores');
  const clusterByCpu = s('nodes by CPU (several nodes)', `⌈node cores ÷ node cores each⌉ = ⌈${fmt(clusterCores)} ÷ ${node.cores}⌉`, Math.max(1, Math.ceil(clusterCores / node.cores)), 'nodes');
  const clusterNodes = Math.max(clusterByCpu, nodesByMemory);
  const clusterMem = s('memory needed (several nodes)', `connection memory + nodes × base = ${gib(connMem)} + ${clusterNodes} × ${gib(c.baseBytes)}`, connMem + clusterNodes * c.baseBytes, 'bytes');
  const pgBusy = s(
    'PostgreSQL busy cores',
    `msgs/s × ${sci(k.pgCpuPerMsg)} + appends/s × ${sci(k.pgCpuPerAppend)} = ${fmt(m)} × ${sci(k.pgCpuPerMsg)} + ${fmt(appends)} × ${sci(k.pgCpuPerAppend)}`,
    m * k.pgCpuPerMsg + appends * k.pgCpuPerAppend,
    'cores',
  );
  const pgLoad = pgBusy / (db.pgCores * u);
  const pgPrimaries = s('PostgreSQL primaries (by uin; + 1 standby each)', `⌈PostgreSQL cores ÷ (server cores × utilisation)⌉ = ⌈${fmt(pgBusy)} ÷ (${db.pgCores} × ${u})⌉`, Math.max(1, Math.ceil(pgLoad)), 'servers');
  const wal = s('PostgreSQL WAL written', `msgs/s × ${fmt(k.pgWalBytesPerMsg)} B + appends/s × ${fmt(k.pgWalBytesPerAppend)} B = ${fmt(m)} × ${fmt(k.pgWalBytesPerMsg)} + ${fmt(appends)} × ${fmt(k.pgWalBytesPerAppend)}`, m * k.pgWalBytesPerMsg + appends * k.pgWalBytesPerAppend, 'bytes/s');
  s('appends/s per primary vs measured here', `appends/s ÷ primaries ÷ ${fmt(k.pgMaxAppendsPerSec)} (a lower bound on 2 shared cores) = ${fmt(appends)} ÷ ${pgPrimaries} ÷ ${fmt(k.pgMaxAppendsPerSec)}`, appends / pgPrimaries / k.pgMaxAppendsPerSec, '× measured');
  const redisBusy = s(
    'Redis busy cores',
    `msgs/s × ${sci(k.redisCpuPerMsg)} + appends/s × ${sci(k.redisCpuPerAppend)} = ${fmt(m)} × ${sci(k.redisCpuPerMsg)} + ${fmt(appends)} × ${sci(k.redisCpuPerAppend)}`,
    m * k.redisCpuPerMsg + appends * k.redisCpuPerAppend,
    'cores',
  );
  const redisLoad = redisBusy / u;
  const redisInstances = s('Redis instances (one thread each; by uin)', `⌈Redis cores ÷ utilisation⌉ = ⌈${fmt(redisBusy)} ÷ ${u}⌉`, Math.max(1, Math.ceil(redisLoad)), 'instances');
  const loads = { cpu: clusterCores / node.cores, memory: connMem / (node.memBytes * node.utilisation - c.baseBytes), writer: writerLoad, postgres: pgLoad, redis: redisLoad };
  return {
    ...onePlan,
    cores: clusterCores,
    memBytes: clusterMem,
    nodesByCpu: clusterByCpu,
    nodes: clusterNodes,
    ...binding(loads, ['cpu', 'memory', 'postgres', 'redis']),
    cluster: { pgBusyCores: pgBusy, pgPrimaries, pgWalBytesPerSec: wal, redisBusyCores: redisBusy, redisInstances },
  };
}

/** The most loaded of `among` (several nodes: the SQLite writer is gone, PostgreSQL and Redis come in). */
function binding(loads: Plan['loads'], among: Plan['binding'][] = ['cpu', 'memory', 'writer']): { binding: Plan['binding']; loads: Plan['loads'] } {
  const top = among.reduce((a, b) => ((loads[b] ?? 0) > (loads[a] ?? 0) ? b : a));
  return { binding: top, loads };
}

/** One measured load step: cores used and the rates that caused it. */
export interface CostSample {
  cores: number;
  msgsPerSec: number;
  appendsPerSec: number;
  deliveriesPerSec: number;
}

/**
 * Non-negative least squares for cores = msgs·a + appends·b + deliveries·c over the samples (see {@link nnls}).
 */
export function fitCpu(samples: readonly CostSample[]): { cpuPerSend: number; cpuPerAppend: number; cpuPerDelivery: number } {
  const [a, b, c] = nnls(
    samples.map((x) => [x.msgsPerSec, x.appendsPerSec, x.deliveriesPerSec]),
    samples.map((x) => x.cores),
  );
  return { cpuPerSend: a!, cpuPerAppend: b!, cpuPerDelivery: c! };
}

/**
 * Non-negative least squares for y ≈ X·β (few unknowns: solve the normal equations, drop any coefficient that
 * comes out negative or undetermined — a column of zeros — and solve again with the rest).
 */
export function nnls(X: readonly (readonly number[])[], y: readonly number[]): number[] {
  const width = X[0]?.length ?? 0;
  let active = Array.from({ length: width }, (_, k) => k);
  for (;;) {
    const n = active.length;
    if (n === 0) return new Array<number>(width).fill(0);
    const A = Array.from({ length: n }, () => new Array<number>(n + 1).fill(0));
    X.forEach((row, r) => {
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) A[i]![j]! += row[active[i]!]! * row[active[j]!]!;
        A[i]![n]! += row[active[i]!]! * y[r]!;
      }
    });
    const x = solve(A);
    const out = new Array<number>(width).fill(0);
    active.forEach((k, i) => (out[k] = x[i] ?? 0));
    const bad = active.filter((k) => out[k]! < 0 || !Number.isFinite(out[k]!));
    if (bad.length === 0) return out;
    // An undetermined system (NaN everywhere): drop the all-zero columns first, else the last unknown.
    const zeros = active.filter((k) => X.every((row) => row[k] === 0));
    const drop = bad.length === active.length ? (zeros.length ? zeros : [active.at(-1)!]) : bad;
    active = active.filter((k) => !drop.includes(k));
  }
}

/** Gaussian elimination with partial pivoting on an augmented n×(n+1) matrix. */
function solve(A: number[][]): number[] {
  const n = A.length;
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(A[r]![col]!) > Math.abs(A[piv]![col]!)) piv = r;
    [A[col], A[piv]] = [A[piv]!, A[col]!];
    const p = A[col]![col]!;
    if (Math.abs(p) < 1e-300) return new Array(n).fill(NaN);
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const f = A[r]![col]! / p;
      for (let k = col; k <= n; k++) A[r]![k]! -= f * A[col]![k]!;
    }
  }
  return A.map((row, i) => row[n]! / row[i]!);
}

function fmt(n: number): string {
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toLocaleString('en-US', { maximumFractionDigits: 3 });
}
function sci(n: number): string {
  return n.toExponential(2);
}
function gib(n: number): string {
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}
