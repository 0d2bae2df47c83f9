/**
 * The capacity model: what a workload (users, online share, devices, messages per user per day, peak factor,
 * group share and size) needs in cores, memory, nodes, storage writes, bus traffic and bandwidth, given the costs
 * measured on this machine (`fitCosts` reads them from the bench JSON records). Pure arithmetic, so a test can
 * check it against a hand-computed case. docs/capacity.md explains every formula.
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
  /** Heartbeat period, seconds. */
  heartbeatSec: number;
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
  /** Log appends per second one core process (the single SQLite writer) sustained. */
  maxAppendsPerSecPerWriter: number;
  /** Where each figure came from. */
  sources: Record<string, string>;
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
  /** The resource with the highest load relative to one node (or, for writes, to the one SQLite writer). */
  binding: 'cpu' | 'memory' | 'writer';
  /** Loads behind `binding`: node-equivalents of CPU and memory, and the writer's load (1 = full at utilisation). */
  loads: { cpu: number; memory: number; writer: number };
  /** Whether one SQLite writer could take the appends; else PostgreSQL (docs/scaling.md). */
  isSingleWriterEnough: boolean;
  storageWritesPerSec: number;
  busPublishesPerSec: number;
  bandwidthBitsPerSec: number;
}

const HEARTBEAT_BYTES = 32; // HEARTBEAT + HEARTBEAT_ACK, 16-byte headers, no body

/** Computes the plan, keeping every intermediate figure with its formula. */
export function plan(w: Workload, c: Costs, node: NodeShape): Plan {
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
  const heartbeats = s('heartbeats/s', `connections ÷ heartbeat = ${fmt(connections)} ÷ ${w.heartbeatSec}`, connections / w.heartbeatSec, 'heartbeats/s');
  const busyCores = s(
    'busy cores at peak',
    `msgs/s × ${sci(c.cpuPerSend)} + appends/s × ${sci(c.cpuPerAppend)} + deliveries/s × ${sci(c.cpuPerDelivery)} = ${fmt(m)} × ${sci(c.cpuPerSend)} + ${fmt(appends)} × ${sci(c.cpuPerAppend)} + ${fmt(deliveries)} × ${sci(c.cpuPerDelivery)}`,
    m * c.cpuPerSend + appends * c.cpuPerAppend + deliveries * c.cpuPerDelivery,
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
  // A direct message publishes one news event per log it lands in (2); a group message one fan-out event (issue #9).
  const bus = s(
    'bus publishes/s (Redis, several nodes)',
    `peak msgs/s × ((1 − g) × 2 + g × 1) = ${fmt(m)} × (${fmt(1 - w.groupShare)} × 2 + ${w.groupShare})`,
    m * ((1 - w.groupShare) * 2 + w.groupShare),
    'publishes/s',
  );
  const bw = s(
    'bandwidth out',
    `(deliveries/s × ${fmt(c.bytesPerDelivery)} B + heartbeats/s × ${HEARTBEAT_BYTES} B) × 8 = (${fmt(deliveries)} × ${fmt(c.bytesPerDelivery)} + ${fmt(heartbeats)} × ${HEARTBEAT_BYTES}) × 8`,
    (deliveries * c.bytesPerDelivery + heartbeats * HEARTBEAT_BYTES) * 8,
    'bit/s',
  );
  return {
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
    ...binding(cores / node.cores, connMem / (node.memBytes * node.utilisation - c.baseBytes), writerLoad),
    isSingleWriterEnough,
    storageWritesPerSec: storageWrites,
    busPublishesPerSec: bus,
    bandwidthBitsPerSec: bw,
  };
}

function binding(cpu: number, memory: number, writer: number): { binding: Plan['binding']; loads: Plan['loads'] } {
  const loads = { cpu, memory, writer };
  const top = (Object.keys(loads) as Plan['binding'][]).reduce((a, b) => (loads[b] > loads[a] ? b : a));
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
 * Non-negative least squares for cores = msgs·a + appends·b + deliveries·c over the samples (3 unknowns: solve
 * the normal equations, drop any coefficient that comes out negative and solve again).
 */
export function fitCpu(samples: readonly CostSample[]): { cpuPerSend: number; cpuPerAppend: number; cpuPerDelivery: number } {
  const cols: (keyof CostSample)[] = ['msgsPerSec', 'appendsPerSec', 'deliveriesPerSec'];
  let active = [0, 1, 2];
  for (;;) {
    const n = active.length;
    const A = Array.from({ length: n }, () => new Array<number>(n + 1).fill(0));
    for (const smp of samples)
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) A[i]![j]! += smp[cols[active[i]!]!] * smp[cols[active[j]!]!];
        A[i]![n]! += smp[cols[active[i]!]!] * smp.cores;
      }
    const x = solve(A);
    const out = [0, 0, 0];
    active.forEach((k, i) => (out[k] = x[i] ?? 0));
    const negative = active.filter((k) => out[k]! < 0 || !Number.isFinite(out[k]!));
    if (negative.length === 0 || active.length === 1) return { cpuPerSend: Math.max(0, out[0]!), cpuPerAppend: Math.max(0, out[1]!), cpuPerDelivery: Math.max(0, out[2]!) };
    active = active.filter((k) => !negative.includes(k));
    if (active.length === 0) return { cpuPerSend: 0, cpuPerAppend: 0, cpuPerDelivery: 0 };
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
