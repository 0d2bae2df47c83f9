/**
 * Group commit: concurrent writes are gathered into one store transaction, and each caller is answered only
 * after its batch is durable. Batches are pipelined: the next batch runs and commits while the previous one
 * waits for its sync to disk, and one WAL sync covers every batch that committed meanwhile. Events (news, ended
 * sessions) are published after the sync, in commit order (zulip's send_event_on_commit). See
 * docs/architecture.md "Group commit".
 */
import { LockConflict, type BusEvent, type FanoutEvent, type LogRow, type NewEntry, type NewsEvent, type Store, type StoreTx } from '../core/ports.ts';
import { selectorOfKind } from '../core/rules.ts';
import { SynchatError, type EntryKind } from '../protocol/index.ts';

/** What one job may do besides reading and writing through the transaction. */
export interface Effects {
  /**
   * Locks the logs the job will append to ({@link StoreTx.lockLogs}); call it before the job's first write, and
   * again (still before that write) for users learned of later. An append to a log not locked here is a bug.
   */
  lock(uins: readonly number[]): Promise<void>;
  /** Appends an entry to a user's log; returns its seq. `fields` may be pre-encoded JSON (without seq/kind). */
  append(uin: number, kind: EntryKind, fields: Readonly<Record<string, unknown>> | string): Promise<number>;
  /** Appends the same entry to several users' logs (a fan-out: `fields` encoded once); returns their seqs in order. */
  appendEach(uins: readonly number[], kind: EntryKind, fields: Readonly<Record<string, unknown>> | string): Promise<number[]>;
  /** Announces, after commit, that a session ended. */
  sessionEnded(sessionId: string, uin: number, ret: number): void;
}

/**
 * A unit of work run inside a batch. It must check everything before it writes anything, and lock the logs it
 * appends to ({@link Effects.lock}) before its first write: a job whose locks conflict runs again, first in the
 * next batch. It may run more than once (a retried transaction): only its last run counts.
 */
export type Job<T> = (tx: StoreTx, fx: Effects) => Promise<T>;

interface Pending {
  job: Job<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  /** Times this job met a {@link LockConflict}. */
  conflicts: number;
  /** Every log the job asked to lock in its runs so far: a rerun after a conflict locks them all first, in one call. */
  locks: Set<number> | undefined;
}

/**
 * A job that meets a lock conflict this many times in a row fails (with a server error) instead of going round
 * again: first in its batch it holds no other lock, so only a job that keeps learning new users can get here.
 */
const MAX_LOCK_CONFLICTS = 20;

/** Per-job effect buffer, merged into the batch only when the job succeeded. Appends are kept in log order. */
class JobEffects implements Effects {
  /** Single appends (a row) and fan-outs (one event for many users), in the order they were appended. */
  readonly appended: (LogRow | FanoutEvent)[] = [];
  readonly events: BusEvent[] = [];
  readonly #tx: StoreTx;
  /** Logs this job locked. */
  readonly #locked = new Set<number>();
  /** Every log this job asked for, locked or not (kept on the job for its rerun after a conflict). */
  readonly asked: Set<number>;
  constructor(tx: StoreTx, asked: Set<number>) {
    this.#tx = tx;
    this.asked = asked;
  }
  async lock(uins: readonly number[]): Promise<void> {
    for (const u of uins) this.asked.add(u);
    const fresh = uins.filter((u) => !this.#locked.has(u));
    if (fresh.length === 0) return;
    await this.#tx.lockLogs(fresh);
    for (const u of fresh) this.#locked.add(u);
  }
  #checkLocked(uin: number): void {
    if (!this.#locked.has(uin)) throw new Error(`append to user ${uin}'s log without Effects.lock first`);
  }
  async append(uin: number, kind: EntryKind, fields: Readonly<Record<string, unknown>> | string): Promise<number> {
    this.#checkLocked(uin);
    const [row] = await this.#tx.append([{ uin, kind, fields: typeof fields === 'string' ? fields : JSON.stringify(fields) }]);
    this.appended.push(row!);
    return row!.seq;
  }
  async appendEach(uins: readonly number[], kind: EntryKind, fields: Readonly<Record<string, unknown>> | string): Promise<number[]> {
    const text = typeof fields === 'string' ? fields : JSON.stringify(fields);
    // Ascending uins: listeners find their users by binary search, and a networked store locks in this order.
    const sorted = [...new Set(uins)].sort((x, y) => x - y);
    for (const uin of sorted) this.#checkLocked(uin);
    const rows = await this.#tx.append(sorted.map((uin): NewEntry => ({ uin, kind, fields: text })));
    const seqs = rows.map((r) => r.seq);
    this.appended.push({ kind, selector: selectorOfKind(kind), fields: text, uins: sorted, seqs });
    const seqOf = new Map(sorted.map((uin, i) => [uin, seqs[i]!]));
    return uins.map((uin) => seqOf.get(uin)!);
  }
  sessionEnded(sessionId: string, uin: number, ret: number): void {
    this.events.push({ type: 'sessionEnded', ended: { sessionId, uin, ret } });
  }
}

/**
 * Turns a batch's appends into bus events in log order per user: consecutive single appends of a user share one
 * {@link NewsEvent}; a fan-out is one {@link FanoutEvent}, after which that user's next single append starts a
 * new NewsEvent (so a listener sees that user's entries in seq order).
 */
class BatchNews {
  readonly events: BusEvent[] = [];
  /** The event that last carried each user's entries: their open NewsEvent, or a fan-out. */
  readonly #last = new Map<number, NewsEvent | FanoutEvent>();

  add(item: LogRow | FanoutEvent): void {
    if ('uins' in item) {
      this.events.push({ type: 'fanout', fanout: item });
      for (const uin of item.uins) this.#last.set(uin, item);
      return;
    }
    const last = this.#last.get(item.uin);
    if (last && 'entries' in last) {
      last.head = item.seq;
      last.selector |= selectorOfKind(item.kind);
      last.entries.push(item.json);
      return;
    }
    const news: NewsEvent = { uin: item.uin, prevSeq: item.seq - 1, head: item.seq, selector: selectorOfKind(item.kind), entries: [item.json] };
    this.#last.set(item.uin, news);
    this.events.push({ type: 'news', news });
  }
}

/** Options of the batcher. */
export interface GroupCommitOptions {
  /** false: one transaction per job, none pipelined (for comparison benchmarks). @default true */
  isEnabled: boolean;
  /** Most jobs in one transaction. @default 2000 */
  maxBatch: number;
  /**
   * Batches committed and not yet durable, at most (the one running included). 2: one batch runs and commits
   * while the previous one's WAL sync is on the disk; more only queue behind the same sync. @default 2
   */
  maxInFlight?: number;
  /**
   * Longest gathering pause, in ms. Under load (a batch still waiting for its sync and at least two jobs queued)
   * a batch that took E ms to run is followed by a pause of min(E, this) before the next starts, so heavy jobs
   * share pages: a 500-member fan-out writes ~500 index pages whoever else is in its commit (measured: 5.7 ms of
   * SQLite per message alone in a commit, 2.5 ms eight to a commit). Light batches (under 1 ms) and a lone job
   * start at once (a pause for one queued job gathered little and cost a 500-member send ~10 ms at 120 msgs/s).
   * @default 10
   */
  maxGatherMs?: number;
  /**
   * Least time between the starts of two batches, in ms. A commit has a fixed cost (BEGIN/COMMIT, the shared
   * tail and heads pages, the sync request: ~0.1–0.2 ms of the event loop) whatever its size; measured in-process
   * at 4,000 sends/s, 2 ms gives batches of ~10 instead of ~5 and 10% less CPU per send, for ~1 ms of latency.
   * @default 2
   */
  minIntervalMs?: number;
  /** Called after each commit with its events, in commit order. */
  publish: (events: BusEvent[]) => void;
  /** Logs a job that failed unexpectedly. */
  onError: (err: unknown) => void;
  /**
   * Called when a batch is durable, before its callers are answered: `jobs` in it, `runMs` from its start to its
   * jobs having run, `syncMs` from then to durable (metrics; must be cheap).
   */
  onDurable?: (jobs: number, runMs: number, syncMs: number) => void;
}

/** A batch's run shorter than this is not followed by a gathering pause, in ms. */
const GATHER_AFTER_MS = 1;

/** Gathers jobs into batches; one batch runs at a time, and the next runs while the previous one syncs. */
export class GroupCommit {
  readonly #store: Store;
  readonly #opts: GroupCommitOptions;
  #queue: Pending[] = [];
  #isRunning = false;
  /** Batches that ran and wait for their sync, oldest first. */
  readonly #inFlight: Promise<void>[] = [];
  /** How long the last batch took to run (its jobs, up to COMMIT), in ms. */
  #lastRunMs = 0;
  #lastStartMs = 0;
  /** Figures for /metrics and benchmarks; `appends`: log entries written (a fan-out counts each member). */
  readonly stats = { batches: 0, jobs: 0, maxBatch: 0, lockConflicts: 0, appends: 0 };

  constructor(store: Store, opts: GroupCommitOptions) {
    this.#store = store;
    this.#opts = opts;
  }

  /** Runs `job` in the next batch; resolves after that batch is durable. */
  run<T>(job: Job<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ job: job as Job<unknown>, resolve: resolve as (v: unknown) => void, reject, conflicts: 0, locks: undefined });
      this.#kick();
    });
  }

  #kick(): void {
    if (this.#isRunning) return;
    this.#isRunning = true;
    // Let this turn of the event loop enqueue everything that already arrived before the batch starts.
    setImmediate(() => void this.#drain());
  }

  /** Resolves when the queue is empty and every batch is durable (for shutdown). */
  async idle(): Promise<void> {
    while (this.#isRunning || this.#inFlight.length > 0) await new Promise((r) => setTimeout(r, 5));
  }

  async #drain(): Promise<void> {
    const isEnabled = this.#opts.isEnabled;
    // A store that runs several transactions at once (PostgreSQL: each waits on round trips, not on a disk) gets
    // that many batches in flight, each started as soon as there is work, instead of one after another.
    const concurrency = this.#store.concurrency;
    const maxInFlight = !isEnabled ? 1 : concurrency > 1 ? concurrency : Math.max(1, this.#opts.maxInFlight ?? 2);
    while (this.#queue.length > 0) {
      while (this.#inFlight.length >= maxInFlight) await this.#inFlight[0];
      const take = isEnabled ? this.#opts.maxBatch : 1;
      if (isEnabled && this.#queue.length < take) {
        const sinceMs = performance.now() - this.#lastStartMs;
        const gatherMs = this.#inFlight.length > 0 && this.#queue.length >= 2 && this.#lastRunMs >= GATHER_AFTER_MS ? Math.min(this.#lastRunMs, this.#opts.maxGatherMs ?? 10) : 0;
        const waitMs = Math.max(gatherMs, (this.#opts.minIntervalMs ?? 2) - sinceMs);
        if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
      }
      const batch = this.#queue.splice(0, this.#firstOfEach(take));
      const startMs = performance.now();
      this.#lastStartMs = startMs;
      let hasRun!: () => void;
      const ran = new Promise<void>((r) => (hasRun = r));
      const durable = this.#commit(batch, hasRun).catch((err) => this.#retryAlone(batch, err));
      const slot = durable.finally(() => this.#inFlight.splice(this.#inFlight.indexOf(slot), 1));
      this.#inFlight.push(slot);
      // The next batch starts once this one has run (or failed); it then overlaps this one's sync.
      if (concurrency === 1) await Promise.race([ran, durable]);
      this.#lastRunMs = performance.now() - startMs;
    }
    this.#isRunning = false;
  }

  /**
   * How many queued jobs the next batch takes, at most `take`: a job rerun after a lock conflict must be first in
   * its batch (holding nothing, it may wait for its locks), so a batch ends before the second such job.
   */
  #firstOfEach(take: number): number {
    const end = Math.min(take, this.#queue.length);
    for (let i = 1; i < end; i++) if (this.#queue[i]!.locks) return i;
    return end;
  }

  /** Puts jobs that met a lock conflict at the head of the queue, in their order. */
  #requeue(jobs: Pending[]): void {
    const again: Pending[] = [];
    for (const p of jobs) {
      p.conflicts++;
      if (p.conflicts > MAX_LOCK_CONFLICTS) p.reject(new Error(`job met ${MAX_LOCK_CONFLICTS} lock conflicts in a row`));
      else again.push(p);
    }
    this.stats.lockConflicts += jobs.length;
    this.#queue.unshift(...again);
    if (again.length > 0) this.#kick();
  }

  /** A job broke an invariant and the batch rolled back: each job runs again alone, so one bad job fails alone. */
  async #retryAlone(batch: Pending[], err: unknown): Promise<void> {
    this.#opts.onError(err);
    if (batch.length === 1) {
      batch[0]!.reject(err);
      return;
    }
    for (const p of batch) await this.#commit([p], () => {}).catch((e) => p.reject(e));
  }

  /** Runs the batch in one transaction; `hasRun` is called once its jobs ran. Resolves when durable. */
  async #commit(batch: Pending[], hasRun: () => void): Promise<void> {
    const startMs = performance.now();
    let ranMs = startMs;
    let outcomes: { p: Pending; ok: boolean; value: unknown }[] = [];
    let ended: BusEvent[] = [];
    let news = new BatchNews();
    /** Jobs that met a lock conflict: they run again, first in the next batch. */
    let conflicted: Pending[] = [];
    await this.#store.transaction(async (tx) => {
      // A retried transaction (Store contract) runs every job again: only the last run's outcomes count.
      outcomes = [];
      ended = [];
      news = new BatchNews();
      conflicted = [];
      for (const p of batch) {
        const fx = new JobEffects(tx, new Set(p.locks));
        try {
          // A rerun after a conflict first takes, in one call and in uin order, every lock the job asked for
          // before: first in its batch it holds nothing, so it may wait, and its own later calls find them held.
          if (p.locks) await fx.lock([...p.locks]);
          const value = await p.job(tx, fx);
          outcomes.push({ p, ok: true, value });
          for (const item of fx.appended) news.add(item);
          for (const ev of fx.events) ended.push(ev);
        } catch (err) {
          if (err instanceof LockConflict) {
            p.locks = fx.asked;
            conflicted.push(p);
            continue;
          }
          if (!(err instanceof SynchatError)) throw err;
          outcomes.push({ p, ok: false, value: err });
        }
      }
      ranMs = performance.now();
      hasRun();
    });
    if (conflicted.length > 0) this.#requeue(conflicted);
    this.stats.batches++;
    this.stats.jobs += batch.length;
    if (batch.length > this.stats.maxBatch) this.stats.maxBatch = batch.length;
    for (const ev of news.events) this.stats.appends += ev.type === 'fanout' ? ev.fanout.uins.length : ev.type === 'news' ? ev.news.entries.length : 0;
    this.#opts.onDurable?.(batch.length, ranMs - startMs, performance.now() - ranMs);
    const events = ended.length > 0 ? [...ended, ...news.events] : news.events;
    for (const o of outcomes) (o.ok ? o.p.resolve : o.p.reject)(o.value);
    // PROTOCOL.md "Durability": announce only after commit; a lost event costs latency, never data.
    if (events.length > 0) this.#opts.publish(events);
  }
}
