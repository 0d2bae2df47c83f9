/**
 * One process's Prometheus metrics (prom-client): the histograms the service and the edges feed through their
 * observer seams, and the counts and gauges read from their stats objects when scraped. src/ops/node-metrics.ts
 * adds up a node's processes. Every metric is named `synchat_…`; the list with meanings is docs/operations.md
 * "Metrics".
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Registry, type Metric, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { ServiceObserver } from '../service/observer.ts';

/** The process's part in its node (the `process` label is `<role>-<pid>`). */
export type ProcessRole = 'core' | 'gateway' | 'single';

/** What a core (or single) process reads from its service when scraped: ChatService.opsStats. */
export interface CoreSources {
  opsStats(): { usersOnline: number; sends: number; appends: number; batches: number; syncEntries: number };
}

/** What a gateway (or single) process reads from its edges when scraped. */
export interface GatewaySources {
  /** Long connections: open ones by transport, outbound bytes held, authenticated ones by heartbeat period. */
  connectionStats(): { bufferedBytes: number; byTransport: Record<string, number>; byHeartbeatMs: Record<number, number> };
  parkedPolls(): number;
  /** src/transports/edge-stats.ts EdgeStats: answers by transport and ret, entries pushed. */
  edgeStats: { readonly answers: Readonly<Record<string, ReadonlyMap<number, number>>>; readonly pushedEntries: number; onDelivered: ((ms: number) => void) | undefined };
}

/**
 * Latency buckets in seconds (Prometheus' unit), spaced for ms-scale figures: a send commits in 2-20 ms on the
 * bench machine (BENCHMARKS.md), and a second or more means trouble.
 */
const LATENCY_BUCKETS_S = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5];
/** Jobs per group-commit batch: one to GroupCommitOptions.maxBatch (2,000). */
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048];
/** Entries per sync page: 0 (nothing new) to LIMITS.maxSyncLimit (1,000). */
const PAGE_BUCKETS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
/** How often the event-loop delay window turns, in ms: the dashboard reads once a second. */
const LOOP_WINDOW_MS = 1000;
/** Resolution of the event-loop delay sampler, in ms (perf_hooks' default; each sample is one timer). */
const LOOP_RESOLUTION_MS = 10;

/**
 * A histogram without labels whose `observe` is a walk over its bounds and three additions. prom-client's
 * `Histogram.observe` hashes the labels and builds a closure on every call: measured 600 ns a call here, against
 * 17-33 ns for this (bench/probes/metrics-cost.test.ts; BENCHMARKS.md "Issue 13: what metrics cost"), and a send
 * passes two. It hands the registry prom-client's own JSON shape of a histogram, so exposition and
 * `AggregatorRegistry` treat it as one.
 */
class HotHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #bounds: number[];
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(name: string, help: string, bounds: number[], registry: Registry) {
    this.name = name;
    this.help = help;
    this.#bounds = bounds;
    this.#counts = new Float64Array(bounds.length + 1);
    registry.registerMetric(this as unknown as Metric);
  }

  observe(value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.#counts[i]!++;
    this.#sum += value;
    this.#count++;
  }

  get(): MetricObjectWithValues<MetricValue<string>> {
    const values: MetricValue<string>[] = [];
    let cumulative = 0;
    for (let i = 0; i <= this.#bounds.length; i++) {
      cumulative += this.#counts[i]!;
      values.push({ metricName: `${this.name}_bucket`, labels: { le: i < this.#bounds.length ? this.#bounds[i]! : '+Inf' }, value: cumulative } as MetricValue<string>);
    }
    values.push({ metricName: `${this.name}_sum`, labels: {}, value: this.#sum } as MetricValue<string>);
    values.push({ metricName: `${this.name}_count`, labels: {}, value: this.#count } as MetricValue<string>);
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' } as unknown as MetricObjectWithValues<MetricValue<string>>;
  }
}

/** One process's registry and the hooks that feed it. */
export class ProcessMetrics implements ServiceObserver {
  readonly registry = new Registry();
  readonly role: ProcessRole;
  /** `<role>-<pid>`: the `process` label of this process's gauges. */
  readonly processLabel: string;
  readonly #sendToCommit: HotHistogram;
  readonly #commitToDelivery: HotHistogram;
  readonly #commitRun: HotHistogram;
  readonly #commitSync: HotHistogram;
  readonly #batchJobs: HotHistogram;
  readonly #syncPage: HotHistogram;
  readonly #busLag: HotHistogram;
  readonly #loop: IntervalHistogram;
  readonly #loopTimer: NodeJS.Timeout;
  /** Event-loop delay over the last whole window, in ms. */
  #loopP99Ms = 0;
  #loopMaxMs = 0;
  #core: CoreSources | undefined;
  #gateway: GatewaySources | undefined;
  /** One walk over the connections serves the gauges of one scrape (each reads it). */
  #connStats: { at: number; stats: ReturnType<GatewaySources['connectionStats']> } | undefined;

  constructor(role: ProcessRole) {
    this.role = role;
    this.processLabel = `${role}-${process.pid}`;
    const registers = [this.registry];
    const histogram = (name: string, help: string, buckets: number[]) => new HotHistogram(name, help, buckets, this.registry);
    this.#sendToCommit = histogram('synchat_send_to_commit_seconds', 'Accepted sends: from the call reaching the service to its batch being durable.', LATENCY_BUCKETS_S);
    this.#commitToDelivery = histogram(
      'synchat_commit_to_delivery_seconds',
      'News from its commit being durable to reaching a device: a PUSH written or a parked synccheck answered (other nodes\' news included).',
      LATENCY_BUCKETS_S,
    );
    this.#commitRun = histogram('synchat_commit_run_seconds', 'Group-commit batches: from the start to the jobs having run (BEGIN, reads, writes).', LATENCY_BUCKETS_S);
    this.#commitSync = histogram(
      'synchat_commit_sync_seconds',
      'Group-commit batches: from the jobs having run to durable (COMMIT and the WAL fsync it waits for; PostgreSQL: the COMMIT round trip).',
      LATENCY_BUCKETS_S,
    );
    this.#batchJobs = histogram('synchat_commit_batch_jobs', 'Jobs (sends and other writes) per group-commit batch.', BATCH_BUCKETS);
    this.#syncPage = histogram('synchat_sync_page_entries', 'Entries per sync page answered.', PAGE_BUCKETS);
    this.#busLag = histogram('synchat_bus_lag_seconds', 'Redis bus: from another node publishing a message to its receipt here (none on the in-process bus).', LATENCY_BUCKETS_S);

    this.#loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    this.#loop.enable();
    this.#loopTimer = setInterval(() => {
      this.#loopP99Ms = this.#loop.percentile(99) / 1e6;
      this.#loopMaxMs = this.#loop.max / 1e6;
      this.#loop.reset();
    }, LOOP_WINDOW_MS);
    this.#loopTimer.unref();
    this.#registerProcessGauges(registers);
    this.#registerCoreMetrics(registers);
    this.#registerGatewayMetrics(registers);
  }

  /** Reads the service's counts at scrape time (core and single processes). */
  watchCore(sources: CoreSources): void {
    this.#core = sources;
  }

  /** Reads the edges' counts at scrape time and times their deliveries (gateway and single processes). */
  watchGateway(sources: GatewaySources): void {
    this.#gateway = sources;
    const h = this.#commitToDelivery;
    sources.edgeStats.onDelivered = (ms) => h.observe(ms / 1000);
  }

  /** For the Redis bus's `onReceived`: one message's lag, in ms. */
  readonly busReceived = (lagMs: number): void => this.#busLag.observe(lagMs / 1000);

  // ---- ServiceObserver (the core's hot path: one histogram observation each) ----------------------------------

  sendCommitted(ms: number): void {
    this.#sendToCommit.observe(ms / 1000);
  }

  batchDurable(jobs: number, runMs: number, syncMs: number): void {
    this.#batchJobs.observe(jobs);
    this.#commitRun.observe(runMs / 1000);
    this.#commitSync.observe(syncMs / 1000);
  }

  syncPage(entries: number): void {
    this.#syncPage.observe(entries);
  }

  /** The connections' stats, walked at most once per 100 ms (a scrape reads them for several gauges). */
  #connectionStats(): ReturnType<GatewaySources['connectionStats']> | undefined {
    if (!this.#gateway) return undefined;
    const now = performance.now();
    if (!this.#connStats || now - this.#connStats.at > 100) this.#connStats = { at: now, stats: this.#gateway.connectionStats() };
    return this.#connStats.stats;
  }

  /** Stops the event-loop sampler. */
  close(): void {
    clearInterval(this.#loopTimer);
    this.#loop.disable();
  }

  // ---- gauges and counts read at scrape time -------------------------------------------------------------------

  #registerProcessGauges(registers: Registry[]): void {
    const loopMs = () => ({ p99: this.#loopP99Ms, max: this.#loopMaxMs });
    const labelNames = ['process'] as const;
    const p = { process: this.processLabel };
    new Gauge({
      name: 'synchat_process_resident_memory_bytes',
      help: 'Resident set size of the process.',
      labelNames,
      registers,
      collect() {
        this.set(p, process.memoryUsage.rss());
      },
    });
    new Gauge({
      name: 'synchat_process_heap_used_bytes',
      help: 'V8 heap in use in the process.',
      labelNames,
      registers,
      collect() {
        this.set(p, process.memoryUsage().heapUsed);
      },
    });
    new Counter({
      name: 'synchat_process_cpu_seconds_total',
      help: 'User and system CPU time of the process since it started.',
      labelNames,
      registers,
      collect() {
        const u = process.cpuUsage();
        this.reset();
        this.inc(p, (u.user + u.system) / 1e6);
      },
    });
    new Gauge({
      name: 'synchat_event_loop_delay_p99_seconds',
      help: `Event-loop delay of the process, 99th percentile over the last ${LOOP_WINDOW_MS / 1000} s (sampled every ${LOOP_RESOLUTION_MS} ms).`,
      labelNames,
      registers,
      collect() {
        this.set(p, loopMs().p99 / 1000);
      },
    });
    new Gauge({
      name: 'synchat_event_loop_delay_max_seconds',
      help: `Event-loop delay of the process, the longest over the last ${LOOP_WINDOW_MS / 1000} s.`,
      labelNames,
      registers,
      collect() {
        this.set(p, loopMs().max / 1000);
      },
    });
  }

  #registerCoreMetrics(registers: Registry[]): void {
    const core = () => this.#core?.opsStats();
    const pushed = () => this.#gateway?.edgeStats.pushedEntries ?? 0;
    /** A counter set from a total the service keeps; absent outside a core process. */
    const total = (name: string, help: string, read: (s: ReturnType<CoreSources['opsStats']>) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          const stats = core();
          if (stats) this.inc(read(stats));
        },
      });
    total('synchat_sends_total', 'Sends answered ret 0 (a repeated clientMsgId included) since start.', (s) => s.sends);
    total('synchat_log_appends_total', 'Entries appended to users\' logs since start (a group message: one per member).', (s) => s.appends);
    new Gauge({
      name: 'synchat_users_online',
      help: 'Users with at least one attached device (long connection or parked synccheck) on this node.',
      registers,
      collect() {
        this.set(core()?.usersOnline ?? 0);
      },
    });
    new Counter({
      name: 'synchat_deliveries_total',
      help: 'Entries handed to devices since start, by how: in a PUSH, or in a sync page.',
      labelNames: ['via'] as const,
      registers,
      collect() {
        this.reset();
        this.inc({ via: 'push' }, pushed());
        this.inc({ via: 'sync' }, core()?.syncEntries ?? 0);
      },
    });
  }

  #registerGatewayMetrics(registers: Registry[]): void {
    const conns = () => this.#connectionStats();
    const gateway = () => this.#gateway;
    const p = this.processLabel;
    new Gauge({
      name: 'synchat_connections',
      help: 'Open long connections held by the process, by transport.',
      labelNames: ['process', 'transport'] as const,
      registers,
      collect() {
        this.reset();
        const by = conns()?.byTransport ?? {};
        for (const transport of ['tcp', 'ws']) this.set({ process: p, transport }, by[transport] ?? 0);
      },
    });
    new Gauge({
      name: 'synchat_heartbeat_connections',
      help: 'Authenticated long connections held by the process, by the heartbeat period agreed with them.',
      labelNames: ['process', 'heartbeat_seconds'] as const,
      registers,
      collect() {
        this.reset();
        for (const [ms, n] of Object.entries(conns()?.byHeartbeatMs ?? {})) this.set({ process: p, heartbeat_seconds: String(Number(ms) / 1000) }, n);
      },
    });
    new Gauge({
      name: 'synchat_parked_polls',
      help: 'Long-poll synccheck requests parked in the process.',
      labelNames: ['process'] as const,
      registers,
      collect() {
        this.set({ process: p }, gateway()?.parkedPolls() ?? 0);
      },
    });
    new Gauge({
      name: 'synchat_outbound_buffer_bytes',
      help: 'Bytes queued for the process\'s long connections (in the server and in their links).',
      labelNames: ['process'] as const,
      registers,
      collect() {
        this.set({ process: p }, conns()?.bufferedBytes ?? 0);
      },
    });
    new Counter({
      name: 'synchat_answers_total',
      help: 'Answers written, by transport (http, longpoll, tcp, ws) and ret (docs/errors.md).',
      labelNames: ['transport', 'ret'] as const,
      registers,
      collect() {
        this.reset();
        const answers = gateway()?.edgeStats.answers ?? {};
        for (const [transport, byRet] of Object.entries(answers)) {
          for (const [ret, n] of byRet) this.inc({ transport, ret: String(ret) }, n);
        }
      },
    });
  }
}
