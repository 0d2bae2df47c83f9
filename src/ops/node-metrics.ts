/**
 * A node's metrics over all its processes: `/metrics` on any gateway and {@link NodeSnapshot} answer for the whole
 * node. The core process (or the only process) gathers: its own registry, and each gateway's over the cluster IPC
 * channel, then adds them up with prom-client's `AggregatorRegistry.aggregate` (counters and histograms summed;
 * per-process gauges stay apart by their `process` label) and stamps every series with the `node` label. A gateway
 * asks its core, which asks every gateway, itself included. See docs/operations.md "Metrics".
 *
 * The IPC messages are single objects (`{t: 'ops:…'}`), not the arrays the ChatApi channel batches
 * (src/server/ipc.ts), which ignores them; scrapes are rare, so they go unbatched.
 */
import { hostname } from 'node:os';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import type { ProcessMetrics, ProcessRole } from './metrics.ts';
import type { NodeSnapshot, ProcessSnapshot } from './snapshot.ts';

/** One process's metrics as prom-client's JSON (plain data: it crosses the IPC channel). */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** A process-like IPC channel: a cluster Worker seen from the core, or `process` in a gateway. */
export interface OpsChannel {
  send(message: unknown): boolean;
  on(event: 'message', listener: (message: any) => void): unknown;
}

/** Messages of this module (never arrays, so the ChatApi channel passes them by). */
type OpsMessage =
  /** gateway → core: the node's metrics text, or its snapshot. */
  | { t: 'ops:ask'; id: number; want: 'text' | 'snapshot' }
  /** core → gateway: the answer to an `ops:ask`. */
  | { t: 'ops:answer'; id: number; text?: string; snapshot?: NodeSnapshot; error?: string }
  /** core → gateway: send your registry. */
  | { t: 'ops:collect'; id: number }
  /** gateway → core: its registry. */
  | { t: 'ops:collected'; id: number; metrics: MetricsJson };

function isOpsMessage(m: unknown): m is OpsMessage {
  return typeof m === 'object' && m !== null && !Array.isArray(m) && typeof (m as { t?: unknown }).t === 'string' && (m as { t: string }).t.startsWith('ops:');
}

/**
 * How long the core waits for a gateway's registry, in ms: a gateway that does not answer is left out of that
 * scrape. An answer takes a few ms; the bound is for a gateway that is stuck or gone, and with the ask below it stays
 * under Prometheus' default scrape timeout (10 s).
 */
const COLLECT_TIMEOUT_MS = 4000;
/** How long a gateway waits for its core's answer, in ms. */
const ASK_TIMEOUT_MS = 8000;
/**
 * The snapshot's latencies cover at least this long (ms): the histograms' growth since the newest kept reading at
 * least this old. The dashboard reads once a second; a faster reader gets the same window, not a noisier one.
 */
const SNAPSHOT_WINDOW_MS = 1000;
/** Readings kept for {@link SNAPSHOT_WINDOW_MS}: at most one per this many ms. */
const READING_EVERY_MS = 250;

/** What the node is, for the snapshot. */
export interface NodeInfo {
  /** The `node` label on every series: short and stable across restarts (`<hostname>:<http port>`). */
  node: string;
  /** The node's id in the directory (`/api/gateways`), the snapshot's `nodeId`. */
  nodeId: string;
  /** ms since the epoch. */
  startedAt: number;
  /** @default never draining */
  isDraining?: () => boolean;
}

/** What `/metrics` and the dashboard need from a node. */
export interface NodeOps {
  /** The node's metrics in Prometheus' text format. */
  text(): Promise<string>;
  /** The node's {@link NodeSnapshot}. */
  snapshot(): Promise<NodeSnapshot>;
}

/** Cumulative bucket counts of one histogram: upper bounds (seconds, ascending, +Inf last) and counts. */
interface Buckets {
  le: number[];
  counts: number[];
}

/** The node's metrics, gathered by its core process (or its only process). */
export class NodeMetrics implements NodeOps {
  readonly #local: ProcessMetrics;
  readonly #info: NodeInfo;
  readonly #gateways = new Set<OpsChannel>();
  readonly #pending = new Map<number, (metrics: MetricsJson | undefined) => void>();
  #nextId = 1;
  /** Histogram readings for the snapshot's latency window, oldest first. */
  #readings: { at: number; hist: Map<string, Buckets> }[] = [];

  constructor(local: ProcessMetrics, info: NodeInfo) {
    this.#local = local;
    this.#info = info;
  }

  /** Adds a gateway process: it answers collects and may ask for the node's figures. Returns its removal. */
  addGateway(channel: OpsChannel): () => void {
    this.#gateways.add(channel);
    channel.on('message', (m: unknown) => {
      if (!isOpsMessage(m)) return;
      if (m.t === 'ops:collected') {
        const resolve = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        resolve?.(m.metrics);
      } else if (m.t === 'ops:ask') {
        const id = m.id;
        const answer = m.want === 'text' ? this.text().then((text) => ({ text })) : this.snapshot().then((snapshot) => ({ snapshot }));
        void answer.then(
          (a) => channel.send({ t: 'ops:answer', id, ...a } satisfies OpsMessage),
          (err: Error) => channel.send({ t: 'ops:answer', id, error: String(err?.message ?? err) } satisfies OpsMessage),
        );
      }
    });
    return () => void this.#gateways.delete(channel);
  }

  /** Every process's series, added up, each with the `node` label. */
  async collect(): Promise<MetricsJson> {
    return (await (await this.#aggregate()).getMetricsAsJSON()) as MetricsJson;
  }

  async text(): Promise<string> {
    return (await this.#aggregate()).metrics();
  }

  /** A registry holding the sum of every process's registry (measured: ~2 ms for a scrape of one process). */
  async #aggregate(): Promise<Registry> {
    const parts = await Promise.all([this.#local.registry.getMetricsAsJSON() as Promise<MetricsJson>, ...[...this.#gateways].map((g) => this.#ask(g))]);
    const node = this.#info.node;
    const present = parts.filter((p): p is MetricsJson => p !== undefined);
    for (const part of present) for (const metric of part) for (const v of metric.values) v.labels = { ...v.labels, node };
    return AggregatorRegistry.aggregate(present);
  }

  async snapshot(): Promise<NodeSnapshot> {
    const at = Date.now();
    const metrics = await this.collect();
    const hist = histogramsOf(metrics);
    const base = this.#windowStart(at, hist);
    const latency = (name: string, q: number) => 1000 * quantile(deltaOf(hist.get(name), base?.get(name)), q);
    const processes = processesOf(metrics);
    return {
      nodeId: this.#info.nodeId,
      at,
      startedAt: this.#info.startedAt,
      isDraining: this.#info.isDraining?.() ?? false,
      processes,
      usersOnline: sumOf(metrics, 'synchat_users_online'),
      totals: {
        sends: sumOf(metrics, 'synchat_sends_total'),
        appends: sumOf(metrics, 'synchat_log_appends_total'),
        deliveries: sumOf(metrics, 'synchat_deliveries_total'),
        batches: sumOf(metrics, 'synchat_commit_batch_jobs', '_count'),
      },
      latencyMs: {
        sendToCommitP50: latency('synchat_send_to_commit_seconds', 0.5),
        sendToCommitP99: latency('synchat_send_to_commit_seconds', 0.99),
        commitToDeliveryP99: latency('synchat_commit_to_delivery_seconds', 0.99),
        fsyncP99: latency('synchat_commit_sync_seconds', 0.99),
      },
      heartbeats: heartbeatsOf(metrics),
    };
  }

  /** Keeps `hist` as a reading and returns the one the latency window starts at (none yet: since start). */
  #windowStart(at: number, hist: Map<string, Buckets>): Map<string, Buckets> | undefined {
    const readings = this.#readings;
    const last = readings[readings.length - 1];
    if (!last || at - last.at >= READING_EVERY_MS) readings.push({ at, hist });
    while (readings.length > 1 && at - readings[1]!.at >= SNAPSHOT_WINDOW_MS) readings.shift();
    const first = readings[0]!;
    return first.hist === hist ? undefined : first.hist;
  }

  /** One gateway's registry, or undefined if it does not answer in time. */
  #ask(channel: OpsChannel): Promise<MetricsJson | undefined> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve(undefined);
      }, COLLECT_TIMEOUT_MS);
      timer.unref();
      this.#pending.set(id, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      try {
        channel.send({ t: 'ops:collect', id } satisfies OpsMessage);
      } catch {
        // The gateway is gone; its exit removes it.
        this.#pending.delete(id);
        clearTimeout(timer);
        resolve(undefined);
      }
    });
  }
}

/** A gateway process's view: it answers its core's collects and asks the core for the node's figures. */
export class GatewayOps implements NodeOps {
  readonly #channel: OpsChannel;
  readonly #pending = new Map<number, (m: Extract<OpsMessage, { t: 'ops:answer' }>) => void>();
  #nextId = 1;

  constructor(local: ProcessMetrics, channel: OpsChannel) {
    this.#channel = channel;
    channel.on('message', (m: unknown) => {
      if (!isOpsMessage(m)) return;
      if (m.t === 'ops:collect') {
        void local.registry.getMetricsAsJSON().then((metrics) => channel.send({ t: 'ops:collected', id: m.id, metrics: metrics as MetricsJson } satisfies OpsMessage));
      } else if (m.t === 'ops:answer') {
        const resolve = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        resolve?.(m);
      }
    });
  }

  async text(): Promise<string> {
    const a = await this.#askCore('text');
    return a.text ?? '';
  }

  async snapshot(): Promise<NodeSnapshot> {
    const a = await this.#askCore('snapshot');
    if (!a.snapshot) throw new Error('no snapshot in the core\'s answer');
    return a.snapshot;
  }

  #askCore(want: 'text' | 'snapshot'): Promise<Extract<OpsMessage, { t: 'ops:answer' }>> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`the core process did not answer ops:${want} within ${ASK_TIMEOUT_MS} ms`));
      }, ASK_TIMEOUT_MS);
      timer.unref();
      this.#pending.set(id, (m) => {
        clearTimeout(timer);
        if (m.error !== undefined) reject(new Error(m.error));
        else resolve(m);
      });
      this.#channel.send({ t: 'ops:ask', id, want } satisfies OpsMessage);
    });
  }
}

// ---- reading the aggregated series ------------------------------------------------------------------------------

function metricOf(metrics: MetricsJson, name: string): MetricObjectWithValues<MetricValue<string>> | undefined {
  return metrics.find((m) => m.name === name);
}

/** Sum of a metric's samples; `suffix` picks a histogram's `_count` or `_sum`. */
function sumOf(metrics: MetricsJson, name: string, suffix?: '_count' | '_sum'): number {
  const m = metricOf(metrics, name);
  if (!m) return 0;
  let sum = 0;
  for (const v of m.values) {
    const sample = (v as { metricName?: string }).metricName;
    if (suffix ? sample === name + suffix : sample === undefined || sample === name) sum += v.value;
  }
  return sum;
}

/** Every histogram's cumulative buckets (the node's series are one per histogram: no labels but `node`). */
function histogramsOf(metrics: MetricsJson): Map<string, Buckets> {
  const out = new Map<string, Buckets>();
  for (const m of metrics) {
    if (String(m.type) !== 'histogram') continue;
    const pairs: [number, number][] = [];
    for (const v of m.values) {
      if ((v as { metricName?: string }).metricName !== m.name + '_bucket') continue;
      const le = v.labels.le;
      pairs.push([le === '+Inf' ? Infinity : Number(le), v.value]);
    }
    pairs.sort((a, b) => a[0] - b[0]);
    out.set(m.name, { le: pairs.map((p) => p[0]), counts: pairs.map((p) => p[1]) });
  }
  return out;
}

/** `now` minus `base`, bucket by bucket (the same bounds: one build of this server). */
function deltaOf(now: Buckets | undefined, base: Buckets | undefined): Buckets | undefined {
  if (!now || !base || base.counts.length !== now.counts.length) return now;
  return { le: now.le, counts: now.counts.map((c, i) => c - base.counts[i]!) };
}

/**
 * The q-quantile of cumulative buckets, interpolated linearly inside its bucket as Prometheus' histogram_quantile
 * does; 0 without observations. Past the last finite bound it is that bound.
 */
export function quantile(b: Buckets | undefined, q: number): number {
  if (!b || b.counts.length === 0) return 0;
  const total = b.counts[b.counts.length - 1]!;
  if (total <= 0) return 0;
  const rank = q * total;
  let prevCount = 0;
  let prevLe = 0;
  for (let i = 0; i < b.counts.length; i++) {
    const count = b.counts[i]!;
    const le = b.le[i]!;
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      if (count === prevCount) return le;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / (count - prevCount);
    }
    prevCount = count;
    prevLe = le;
  }
  return prevLe;
}

/** The per-process gauges, one {@link ProcessSnapshot} per `process` label (`<role>-<pid>`). */
function processesOf(metrics: MetricsJson): ProcessSnapshot[] {
  const byLabel = new Map<string, ProcessSnapshot>();
  const get = (label: string): ProcessSnapshot => {
    let p = byLabel.get(label);
    if (!p) {
      const dash = label.lastIndexOf('-');
      p = {
        pid: Number(label.slice(dash + 1)),
        role: label.slice(0, dash) as ProcessRole,
        rssBytes: 0,
        heapUsedBytes: 0,
        eventLoopDelayP99Ms: 0,
        cpuSeconds: 0,
        connections: { tcp: 0, ws: 0 },
        parkedPolls: 0,
        outboundBytes: 0,
      };
      byLabel.set(label, p);
    }
    return p;
  };
  const each = (name: string, apply: (p: ProcessSnapshot, value: number, labels: Partial<Record<string, string | number>>) => void) => {
    for (const v of metricOf(metrics, name)?.values ?? []) {
      const label = v.labels.process;
      if (typeof label === 'string') apply(get(label), v.value, v.labels);
    }
  };
  each('synchat_process_resident_memory_bytes', (p, v) => (p.rssBytes = v));
  each('synchat_process_heap_used_bytes', (p, v) => (p.heapUsedBytes = v));
  each('synchat_event_loop_delay_p99_seconds', (p, v) => (p.eventLoopDelayP99Ms = v * 1000));
  each('synchat_process_cpu_seconds_total', (p, v) => (p.cpuSeconds = v));
  each('synchat_connections', (p, v, labels) => {
    if (labels.transport === 'tcp' || labels.transport === 'ws') p.connections[labels.transport] = v;
  });
  each('synchat_parked_polls', (p, v) => (p.parkedPolls = v));
  each('synchat_outbound_buffer_bytes', (p, v) => (p.outboundBytes = v));
  // The core first, then the gateways by pid: a stable order for the dashboard.
  const rank = { core: 0, single: 0, gateway: 1 } as const;
  return [...byLabel.values()].sort((a, b) => rank[a.role] - rank[b.role] || a.pid - b.pid);
}

/** Authenticated long connections by agreed heartbeat period, in seconds, over the node's processes. */
function heartbeatsOf(metrics: MetricsJson): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of metricOf(metrics, 'synchat_heartbeat_connections')?.values ?? []) {
    const s = String(v.labels.heartbeat_seconds);
    out[s] = (out[s] ?? 0) + v.value;
  }
  return out;
}

/**
 * The `node` label of a node listening on `httpPort` here: `<hostname>:<port>`, stable across restarts (the
 * directory's node id changes with each start) and distinct for nodes sharing a machine.
 */
export function nodeLabel(httpPort: number): string {
  return `${hostname()}:${httpPort}`;
}
