/**
 * What the service reports as it works, for metrics (src/ops builds Prometheus histograms on it; this layer knows
 * nothing of Prometheus). Each hook is called on the hot path, so an implementation must be cheap: no label strings
 * built per call, no I/O. Counts the service keeps itself ({@link ChatService.opsStats}) are read at scrape time
 * instead. See docs/operations.md "Metrics".
 */
export interface ServiceObserver {
  /** An accepted send is durable: `ms` from its call reaching the service to its batch's sync. */
  sendCommitted(ms: number): void;
  /**
   * A group-commit batch is durable: `jobs` in it, `runMs` from its start to its jobs having run (BEGIN and the
   * jobs' reads and writes), `syncMs` from then to durable (COMMIT and the WAL fsync it waits for).
   */
  batchDurable(jobs: number, runMs: number, syncMs: number): void;
  /** A sync page was answered with `entries` entries. */
  syncPage(entries: number): void;
}
