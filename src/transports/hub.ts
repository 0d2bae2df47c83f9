/**
 * Routes post-commit events to the listeners of this process (parked synccheck requests, long connections),
 * by user and by session. One listener per uin is stored without an array (most users have one device online).
 */
import { encodeEntry } from '../protocol/index.ts';
import type { BusEvent, ChatApi, FanoutEvent, NewsEvent, Subscription } from '../service/index.ts';

/** A parked request or a connection waiting for news of one user. */
export interface HubListener {
  readonly uin: number;
  readonly sessionId: string;
  /** Set by {@link Hub.add} (the attach's hold on this user's news), released by {@link Hub.remove}. */
  subscription: Subscription | undefined;
  onNews(news: NewsEvent): void;
  onSessionEnded(ret: number): void;
}

const RECENT_NEWS = 4096;

/** The per-process event router. */
export class Hub {
  readonly #byUin = new Map<number, HubListener | HubListener[]>();
  readonly #off: () => void;
  #count = 0;
  /** Recent news, so a listener that attached while events were in flight misses none (see {@link Hub.newsSince}). */
  readonly #recent: (NewsEvent | FanoutEvent | undefined)[] = new Array(RECENT_NEWS);
  #received = 0;

  constructor(api: ChatApi) {
    this.#off = api.onEvents((events) => this.#dispatch(events));
  }

  /** Listeners registered now. */
  get size(): number {
    return this.#count;
  }

  /** Adds a listener whose attach succeeded; `subscription` (the attach's) is released when it leaves. */
  add(l: HubListener, subscription: Subscription): void {
    l.subscription = subscription;
    const cur = this.#byUin.get(l.uin);
    if (!cur) this.#byUin.set(l.uin, l);
    else if (Array.isArray(cur)) cur.push(l);
    else this.#byUin.set(l.uin, [cur, l]);
    this.#count++;
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

  /** A mark to pass to {@link Hub.newsSince}: take it before calling attach. */
  mark(): number {
    return this.#received;
  }

  /**
   * News of `uin` beyond `key` that arrived since `mark` (the race between an attach's head read and the
   * listener's registration). `overflow` when too much arrived to tell: the caller must attach again.
   */
  newsSince(mark: number, uin: number, key: number): { selector: number; head: number; entries: string[]; prevSeq: number }[] | 'overflow' {
    if (this.#received - mark > RECENT_NEWS) return 'overflow';
    const out = [];
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
  return { uin: f.uins[i]!, prevSeq: seq - 1, head: seq, selector: f.selector, entries: [encodeEntry(seq, f.kind, f.fields)] };
}
