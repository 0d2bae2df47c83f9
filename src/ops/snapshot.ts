/**
 * What one node reports about itself once a second, as JSON: the admin dashboard (`/admin`) draws it, the node
 * directory orders gateways by it, and `/metrics` exposes the same figures in Prometheus text. Counters are totals
 * since the process started (a reader takes rates from two snapshots); gauges are the value at `at`.
 */

/** One process of a node: the core process, one of its gateway processes, or the only process. */
export interface ProcessSnapshot {
  pid: number;
  role: 'core' | 'gateway' | 'single';
  rssBytes: number;
  heapUsedBytes: number;
  /** Event-loop delay over the last interval, p99, in ms. */
  eventLoopDelayP99Ms: number;
  /** User + system CPU time since the process started, in seconds. */
  cpuSeconds: number;
  /** Long connections held by this process, by transport (0 in a core process with gateways). */
  connections: { tcp: number; ws: number };
  /** Parked long-polls held by this process. */
  parkedPolls: number;
  /** Bytes queued for slow long connections in this process. */
  outboundBytes: number;
}

/** One node: its processes and its totals. */
export interface NodeSnapshot {
  nodeId: string;
  /** Milliseconds since the epoch when the snapshot was taken. */
  at: number;
  startedAt: number;
  /** Set while the node drains (SIGTERM): it takes no new connections. */
  isDraining: boolean;
  processes: ProcessSnapshot[];
  /** Users with at least one attached device on this node. */
  usersOnline: number;
  /** Counters since start: accepted sends, log appends, deliveries to devices, group-commit batches. */
  totals: { sends: number; appends: number; deliveries: number; batches: number };
  /** Latency over the last interval, in ms: send received → durable commit, and commit → delivery written. */
  latencyMs: { sendToCommitP50: number; sendToCommitP99: number; commitToDeliveryP99: number; fsyncP99: number };
  /** Heartbeat periods agreed with the long connections now open: count per period in seconds. */
  heartbeats: Record<string, number>;
}
