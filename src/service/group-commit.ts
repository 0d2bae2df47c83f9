/**
 * Group commit: concurrent writes are gathered into one store transaction with one sync to disk, and each
 * caller is answered only after its batch committed. Events (news, ended sessions) are published after the
 * commit, in commit order (zulip's send_event_on_commit). See docs/architecture.md "Group commit".
 */
import type { BusEvent, LogRow, NewsEvent, Store, StoreTx } from '../core/ports.ts';
import { encodeEntry, selectorOfKind } from '../core/rules.ts';
import { SynchatError, type EntryKind } from '../protocol/index.ts';

/** What one job may do besides reading and writing through the transaction. */
export interface Effects {
  /** Appends an entry to a user's log; returns its seq. `fields` may be pre-encoded JSON (without seq/kind). */
  append(uin: number, kind: EntryKind, fields: Record<string, unknown> | string): Promise<number>;
  /** Announces, after commit, that a session ended. */
  sessionEnded(sessionId: string, uin: number, ret: number): void;
}

/** A unit of work run inside a batch. It must check everything before it writes anything. */
export type Job<T> = (tx: StoreTx, fx: Effects) => Promise<T>;

interface Pending {
  job: Job<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** Per-job effect buffer, merged into the batch only when the job succeeded. */
class JobEffects implements Effects {
  readonly rows: LogRow[] = [];
  readonly events: BusEvent[] = [];
  readonly #tx: StoreTx;
  constructor(tx: StoreTx) {
    this.#tx = tx;
  }
  async append(uin: number, kind: EntryKind, fields: Record<string, unknown> | string): Promise<number> {
    const { head } = await this.#tx.heads(uin);
    const seq = head + 1;
    const row: LogRow = { uin, seq, kind, json: encodeEntry(seq, kind, fields) };
    await this.#tx.appendLog([row], selectorOfKind);
    this.rows.push(row);
    return seq;
  }
  sessionEnded(sessionId: string, uin: number, ret: number): void {
    this.events.push({ type: 'sessionEnded', ended: { sessionId, uin, ret } });
  }
}

/** Options of the batcher. */
export interface GroupCommitOptions {
  /** false: one transaction per job (for comparison benchmarks). @default true */
  isEnabled: boolean;
  /** Most jobs in one transaction. @default 2000 */
  maxBatch: number;
  /**
   * Least time between the starts of two commits, in ms, while jobs keep coming: a commit costs ~0.7 ms of
   * event-loop time whatever its size (WAL frame writes), so under load fewer, larger batches free the core;
   * a job that arrives after a quiet spell still commits at once. @default 4
   */
  minIntervalMs?: number;
  /** Called after each commit with its events, in commit order. */
  publish: (events: BusEvent[]) => void;
  /** Logs a job that failed unexpectedly. */
  onError: (err: unknown) => void;
}

/** Gathers jobs into batches; one batch commits at a time. */
export class GroupCommit {
  readonly #store: Store;
  readonly #opts: GroupCommitOptions;
  #queue: Pending[] = [];
  #isRunning = false;
  #lastStartMs = 0;
  /** How long the last commit took (transaction + disk sync), in ms. */
  #lastCommitMs = 0;
  /** Figures for /metrics and benchmarks. */
  readonly stats = { batches: 0, jobs: 0, maxBatch: 0 };

  constructor(store: Store, opts: GroupCommitOptions) {
    this.#store = store;
    this.#opts = opts;
  }

  /** Runs `job` in the next batch; resolves after that batch is durable. */
  run<T>(job: Job<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ job: job as Job<unknown>, resolve: resolve as (v: unknown) => void, reject });
      if (!this.#isRunning) {
        this.#isRunning = true;
        // Let this turn of the event loop enqueue everything that already arrived before the batch starts.
        setImmediate(() => void this.#drain());
      }
    });
  }

  /** Resolves when the queue is empty (for shutdown). */
  async idle(): Promise<void> {
    while (this.#isRunning) await new Promise((r) => setTimeout(r, 5));
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const take = this.#opts.isEnabled ? this.#opts.maxBatch : 1;
      // Under load, a commit that took long (a 500-member fan-out writes ~500 scattered log pages: ~10 ms) is
      // followed by an equal gathering time, so several such messages share the next commit's pages.
      const intervalMs = Math.max(this.#opts.minIntervalMs ?? 4, 2 * this.#lastCommitMs);
      const waitMs = this.#opts.isEnabled ? this.#lastStartMs + intervalMs - performance.now() : 0;
      if (waitMs > 0 && this.#queue.length < take) await new Promise((r) => setTimeout(r, waitMs));
      this.#lastStartMs = performance.now();
      const batch = this.#queue.splice(0, take);
      try {
        await this.#commit(batch);
        this.#lastCommitMs = performance.now() - this.#lastStartMs;
      } catch (err) {
        // A job broke an invariant: the batch rolled back. Re-run each job alone so one bad job fails alone.
        this.#opts.onError(err);
        if (batch.length === 1) batch[0]!.reject(err);
        else for (const p of batch) await this.#commit([p]).catch((e) => p.reject(e));
      }
    }
    this.#isRunning = false;
  }

  async #commit(batch: Pending[]): Promise<void> {
    const outcomes: { p: Pending; ok: boolean; value: unknown }[] = [];
    const events: BusEvent[] = [];
    const news = new Map<number, NewsEvent>();
    await this.#store.transaction(async (tx) => {
      for (const p of batch) {
        const fx = new JobEffects(tx);
        try {
          const value = await p.job(tx, fx);
          outcomes.push({ p, ok: true, value });
          for (const row of fx.rows) {
            let n = news.get(row.uin);
            if (!n) {
              n = { uin: row.uin, prevSeq: row.seq - 1, head: row.seq, selector: 0, entries: [] };
              news.set(row.uin, n);
            }
            n.head = row.seq;
            n.selector |= selectorOfKind(row.kind);
            n.entries.push(row.json);
          }
          events.push(...fx.events);
        } catch (err) {
          if (!(err instanceof SynchatError)) throw err;
          outcomes.push({ p, ok: false, value: err });
        }
      }
    });
    this.stats.batches++;
    this.stats.jobs += batch.length;
    if (batch.length > this.stats.maxBatch) this.stats.maxBatch = batch.length;
    for (const n of news.values()) events.push({ type: 'news', news: n });
    for (const o of outcomes) (o.ok ? o.p.resolve : o.p.reject)(o.value);
    // PROTOCOL.md "Durability": announce only after commit; a lost event costs latency, never data.
    if (events.length > 0) this.#opts.publish(events);
  }
}
