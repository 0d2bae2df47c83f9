/**
 * Routes post-commit events to the listeners of this process (parked synccheck requests, long connections),
 * by user and by session. One listener per uin is stored without an array (most users have one device online).
 */
import type { BusEvent, ChatApi, NewsEvent } from '../service/index.ts';

/** A parked request or a connection waiting for news of one user. */
export interface HubListener {
  readonly uin: number;
  readonly sessionId: string;
  onNews(news: NewsEvent): void;
  onSessionEnded(ret: number): void;
}

const RECENT_NEWS = 4096;

/** The per-process event router. */
export class Hub {
  readonly #byUin = new Map<number, HubListener | HubListener[]>();
  readonly #api: ChatApi;
  readonly #off: () => void;
  #count = 0;
  /** Recent news, so a listener that attached while events were in flight misses none (see {@link Hub.newsSince}). */
  readonly #recent: (NewsEvent | undefined)[] = new Array(RECENT_NEWS);
  #received = 0;

  constructor(api: ChatApi) {
    this.#api = api;
    this.#off = api.onEvents((events) => this.#dispatch(events));
  }

  /** Listeners registered now. */
  get size(): number {
    return this.#count;
  }

  /** Adds a listener whose attach succeeded. */
  add(l: HubListener): void {
    const cur = this.#byUin.get(l.uin);
    if (!cur) this.#byUin.set(l.uin, l);
    else if (Array.isArray(cur)) cur.push(l);
    else this.#byUin.set(l.uin, [cur, l]);
    this.#count++;
  }

  /** Removes a listener and ends its attach. Safe to call twice. */
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
    this.#api.detach(l.uin);
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
      if (n.uin === uin && n.head > key) out.push(n);
    }
    return out;
  }

  close(): void {
    this.#off();
  }

  #dispatch(events: readonly BusEvent[]): void {
    for (const ev of events) {
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
