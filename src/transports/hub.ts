/**
 * Routes post-commit events to the listeners of this process (parked synccheck requests, long connections),
 * by user and by session. One listener per uin is stored without an array (most users have one device online).
 */
import { RET, encodeEntry } from '../protocol/index.ts';
import { RecentSessionEnds, type BusEvent, type ChatApi, type FanoutEvent, type NewsEvent, type Subscription } from '../service/index.ts';

/** The errMsg of a session end told to a listener (ERROR on a long connection, a poll's answer). */
export function sessionEndedErrMsg(ret: number): string {
  return ret === RET.SESSION_REPLACED ? 'session replaced or revoked' : 'session ended';
}


/** A parked request or a connection waiting for news of one user. */
export interface HubListener {
  readonly uin: number;
  readonly sessionId: string;
  /** Set by {@link Hub.listen} (the attach's hold on this user's news), released by {@link Hub.remove}. */
  subscription: Subscription | undefined;
  onNews(news: NewsEvent): void;
  onSessionEnded(ret: number): void;
}

const RECENT_NEWS = 4096;
/**
 * Session ends kept for attaches in flight (see {@link Hub.listen}): an attach is one service round trip (an IPC
 * hop and a store read, well under the 10 s AUTH deadline); 4096 ends within one would be a mass logout, and
 * then the listener is told to sync (overflow), whose call finds the end in the service.
 */
const RECENT_ENDS = 4096;

/** Taken by {@link Hub.mark} before an attach, passed to {@link Hub.listen} after it. */
export interface HubMark {
  readonly news: number;
  readonly ends: number;
}

/** What {@link Hub.listen} found: news to replay, `overflow` (too much to tell: sync everything), or the end. */
export type Missed = { news: NewsEvent[] } | 'overflow' | { endedRet: number };

/** The per-process event router. */
export class Hub {
  readonly #byUin = new Map<number, HubListener | HubListener[]>();
  readonly #off: () => void;
  #count = 0;
  /** Recent news, so a listener that attached while events were in flight misses none (see {@link Hub.listen}). */
  readonly #recent: (NewsEvent | FanoutEvent | undefined)[] = new Array(RECENT_NEWS);
  #received = 0;
  /** Recent session ends, so an attach in flight when its session ended is refused. */
  readonly #ends = new RecentSessionEnds(RECENT_ENDS);

  constructor(api: ChatApi) {
    this.#off = api.onEvents((events) => this.#dispatch(events));
  }

  /** Listeners registered now. */
  get size(): number {
    return this.#count;
  }

  /**
   * The race-free end of an attach, for every transport: take {@link Hub.mark} before calling attach, then call
   * this with the attach's subscription. Registers `l` and returns the news of its user beyond `key` that
   * reached this process since the mark (committed while the attach was in flight, before `l` listened), or
   * `overflow`. If its session ended since the mark, `l` is not registered, the subscription is released and
   * `{ endedRet }` says how the session ended: the caller answers as if the attach had been refused.
   *
   * Why no end is missed (docs/architecture.md "Attach"): an end is published after its commit. The service
   * refuses an attach whose session ended before the attach took its hold on the user (ChatService.attach checks
   * the ends it received since the attach began, after taking the hold). An end that reaches the service after
   * the hold is delivered to this process: in one process directly; from the core to a gateway process because
   * the hold registered the user for that gateway, in order before the attach's answer on the same channel;
   * from another node over the bus's session-end channel, which every node subscribes to. It reaches this hub
   * either before `l` is registered (after the mark: found here) or after (routed to `l` by sessionId).
   */
  listen(l: HubListener, subscription: Subscription, mark: HubMark, key: number): Missed {
    const endedRet = this.#ends.since(mark.ends, l.sessionId);
    if (endedRet === 'unknown') return this.#register(l, subscription, 'overflow');
    if (endedRet !== 0) {
      subscription.release();
      return { endedRet };
    }
    return this.#register(l, subscription, this.#newsSince(mark.news, l.uin, key));
  }

  #register(l: HubListener, subscription: Subscription, missed: NewsEvent[] | 'overflow'): Missed {
    l.subscription = subscription;
    const cur = this.#byUin.get(l.uin);
    if (!cur) this.#byUin.set(l.uin, l);
    else if (Array.isArray(cur)) cur.push(l);
    else this.#byUin.set(l.uin, [cur, l]);
    this.#count++;
    return missed === 'overflow' ? missed : { news: missed };
  }

  /** Removes a listener and releases its subscription. Safe to call twice. */
  remove(l: HubListener): void {
    const cur = this.#byUin.get(l.uin);
    if (cur === l) this.#byUin.delete(l.uin);
    else if (Array.isArray(cur)) {
      const i = cur.indexOf(l);
      if (i < 0) return;
      cur.splice(i, 1);
      if (cur.length === 1) this.#byUin.set(l.uin, cur[0]!);
    } else return;
    this.#count--;
    l.subscription?.release();
    l.subscription = undefined;
  }

  /** Listeners of one user (a copy). */
  listenersOf(uin: number): HubListener[] {
    const cur = this.#byUin.get(uin);
    return !cur ? [] : Array.isArray(cur) ? [...cur] : [cur];
  }

  /** A mark to pass to {@link Hub.listen}: take it before calling attach. */
  mark(): HubMark {
    return { news: this.#received, ends: this.#ends.count };
  }

  /**
   * News of `uin` beyond `key` that arrived since `mark` (the race between an attach's head read and the
   * listener's registration). `overflow` when too much arrived to tell: the caller must sync everything.
   */
  #newsSince(mark: number, uin: number, key: number): NewsEvent[] | 'overflow' {
    if (this.#received - mark > RECENT_NEWS) return 'overflow';
    const out: NewsEvent[] = [];
    for (let i = mark; i < this.#received; i++) {
      const n = this.#recent[i % RECENT_NEWS]!;
      if ('uins' in n) {
        const at = indexOfUin(n.uins, uin);
        if (at >= 0 && n.seqs[at]! > key) out.push(expand(n, at));
      } else if (n.uin === uin && n.head > key) out.push(n);
    }
    return out;
  }

  close(): void {
    this.#off();
  }

  #dispatch(events: readonly BusEvent[]): void {
    for (const ev of events) {
      if (ev.type === 'fanout') {
        const f = ev.fanout;
        this.#recent[this.#received++ % RECENT_NEWS] = f;
        // Only the members with a listener here cost anything: their entry is spliced from the shared body.
        for (let i = 0; i < f.uins.length; i++) {
          const cur = this.#byUin.get(f.uins[i]!);
          if (!cur) continue;
          const news = expand(f, i);
          for (const l of Array.isArray(cur) ? [...cur] : [cur]) l.onNews(news);
        }
        continue;
      }
      if (ev.type === 'news') this.#recent[this.#received++ % RECENT_NEWS] = ev.news;
      else this.#ends.add(ev.ended.sessionId, ev.ended.ret);
      const uin = ev.type === 'news' ? ev.news.uin : ev.ended.uin;
      const cur = this.#byUin.get(uin);
      if (!cur) continue;
      for (const l of Array.isArray(cur) ? [...cur] : [cur]) {
        if (ev.type === 'news') l.onNews(ev.news);
        else if (l.sessionId === ev.ended.sessionId) l.onSessionEnded(ev.ended.ret);
      }
    }
  }
}

/** Index of `uin` in ascending `uins`, or -1. */
function indexOfUin(uins: readonly number[], uin: number): number {
  let lo = 0;
  let hi = uins.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = uins[mid]!;
    if (v === uin) return mid;
    if (v < uin) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** The news of member `i` of a fan-out: exactly the entry its log stored. */
function expand(f: FanoutEvent, i: number): NewsEvent {
  const seq = f.seqs[i]!;
  const news: NewsEvent = { uin: f.uins[i]!, prevSeq: seq - 1, head: seq, selector: f.selector, entries: [encodeEntry(seq, f.kind, f.fields)] };
  if (f.committedAt !== undefined) news.committedAt = f.committedAt;
  return news;
}
