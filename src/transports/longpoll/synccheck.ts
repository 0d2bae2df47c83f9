/**
 * Long-poll `synccheck` (PROTOCOL.md "HTTP"): answers at once when entries after the presented key exist,
 * else parks the request until news for its user commits, its timeout passes, a newer poll of the same
 * session replaces it, or the session ends. A parked poll is one small object on a timer wheel.
 */
import { LIMITS, RET, SELECTOR_ALL, aheadOfLogAnswer, synccheckAnswer } from '../../protocol/index.ts';
import type { ChatApi, NewsEvent, Subscription } from '../../service/index.ts';
import { sessionEndedErrMsg, type Hub, type HubListener } from '../hub.ts';
import type { TimerWheel, WheelItem } from '../timer-wheel.ts';
import type { EdgeStats } from '../edge-stats.ts';
import { GOING_AWAY_BODY } from '../drain.ts';

/** Writes the answer: JSON body text; the transport picks the HTTP status from `ret`. */
export type Respond = (ret: number, body: string) => void;

class ParkedPoll implements HubListener, WheelItem {
  readonly uin: number;
  readonly sessionId: string;
  readonly key: number;
  readonly epoch: string;
  deadline: number;
  subscription: Subscription | undefined = undefined;
  #respond: Respond | undefined;
  readonly #owner: SynccheckHandler;

  constructor(owner: SynccheckHandler, uin: number, sessionId: string, key: number, epoch: string, deadline: number, respond: Respond) {
    this.#owner = owner;
    this.uin = uin;
    this.sessionId = sessionId;
    this.key = key;
    this.epoch = epoch;
    this.deadline = deadline;
    this.#respond = respond;
  }

  get isOpen(): boolean {
    return this.#respond !== undefined;
  }

  /** Answers once and unparks. */
  finish(ret: number, body: string): void {
    const respond = this.#respond;
    if (!respond) return;
    this.#respond = undefined;
    this.deadline = Infinity;
    this.#owner.unpark(this);
    respond(ret, body);
  }

  answer(selector: number, syncKey: number): void {
    this.finish(RET.OK, synccheckAnswer(selector, syncKey, this.epoch));
  }

  onNews(news: NewsEvent): void {
    if (news.head <= this.key) return;
    if (this.isOpen) this.#owner.edgeStats?.delivered(0, news.committedAt);
    this.answer(news.selector, news.head);
  }

  onSessionEnded(ret: number): void {
    this.finish(ret, JSON.stringify({ ret, errMsg: sessionEndedErrMsg(ret) }));
  }

  onDeadline(): void {
    this.answer(0, this.key);
  }
}

/** Parks and answers synccheck requests of this process. */
export class SynccheckHandler {
  readonly #api: ChatApi;
  readonly #hub: Hub;
  readonly #wheel: TimerWheel;
  /** sessionId → its parked poll: a new poll of the same device ends the previous one. */
  readonly #bySession = new Map<string, ParkedPoll>();
  #isDraining = false;

  /** Times news reaching parked polls (metrics); absent: not timed. */
  readonly edgeStats: EdgeStats | undefined;

  constructor(api: ChatApi, hub: Hub, wheel: TimerWheel, edgeStats?: EdgeStats) {
    this.edgeStats = edgeStats;
    this.#api = api;
    this.#hub = hub;
    this.#wheel = wheel;
  }

  /** Parked polls now. */
  get parked(): number {
    return this.#bySession.size;
  }

  /**
   * Handles one poll. `syncKey` and `timeoutMs` are validated; `timeoutMs` is clamped here.
   * Returns a cancel function for a client that goes away (no-op once answered).
   */
  async handle(sid: string | undefined, syncKey: number, timeoutMs: number | undefined, ip: string, respond: Respond): Promise<() => void> {
    // Draining: a poll on a kept-alive socket would park on a process that is leaving; the client polls again on a
    // new connection, which reaches a live gateway.
    if (this.#isDraining) {
      respond(RET.GOING_AWAY, GOING_AWAY_BODY);
      return () => {};
    }
    const mark = this.#hub.mark();
    const attached = await this.#api.attach(sid ?? '', syncKey, ip);
    if (attached.ret !== RET.OK) {
      respond(attached.ret, JSON.stringify({ ret: attached.ret, errMsg: attached.errMsg }));
      return () => {};
    }
    if (this.#isDraining) {
      // The drain began during the attach: this poll was not among those it spreads.
      attached.subscription!.release();
      respond(RET.GOING_AWAY, GOING_AWAY_BODY);
      return () => {};
    }
    const { uin, sessionId, head, epoch, selector } = attached as Required<typeof attached>;
    const hold = Math.max(0, Math.min(timeoutMs ?? LIMITS.defaultSynccheckTimeoutMs, LIMITS.maxSynccheckTimeoutMs));
    const poll = new ParkedPoll(this, uin, sessionId, syncKey, epoch, Date.now() + hold, respond);
    this.#bySession.get(sessionId)?.answer(0, this.#bySession.get(sessionId)!.key);
    if (syncKey > head) {
      attached.subscription!.release();
      respond(RET.BAD_REQUEST, aheadOfLogAnswer(syncKey, head, epoch));
      return () => {};
    }
    if (selector > 0 || hold === 0) {
      attached.subscription!.release();
      respond(RET.OK, synccheckAnswer(selector, head, epoch));
      return () => {};
    }
    // News that committed while the attach was in flight reached the hub before this poll was listening; an end
    // of the session in that time refuses the poll.
    const missed = this.#hub.listen(poll, attached.subscription!, mark, syncKey);
    if (missed !== 'overflow' && 'endedRet' in missed) {
      poll.onSessionEnded(missed.endedRet);
      return () => {};
    }
    this.#bySession.set(sessionId, poll);
    this.#wheel.add(poll);
    if (missed === 'overflow') poll.answer(SELECTOR_ALL, head);
    else for (const n of missed.news) poll.onNews(n);
    return () => {
      if (poll.isOpen) {
        poll.deadline = Infinity;
        this.unpark(poll);
      }
    };
  }

  /**
   * Starts draining (docs/operations.md "Draining and rolling restarts"): a poll arriving from now on is answered
   * ret 1102 at once. Returns, for every poll parked now, the action that answers it ret 1102; the gateway spreads
   * them over its drain window.
   */
  drain(): (() => void)[] {
    this.#isDraining = true;
    return [...this.#bySession.values()].map((poll) => () => poll.finish(RET.GOING_AWAY, GOING_AWAY_BODY));
  }

  /** Ends every parked poll with selector 0 (shutdown). */
  closeAll(): void {
    for (const poll of [...this.#bySession.values()]) poll.answer(0, poll.key);
  }

  /** @internal called by a poll when it ends. */
  unpark(poll: ParkedPoll): void {
    if (this.#bySession.get(poll.sessionId) === poll) this.#bySession.delete(poll.sessionId);
    this.#hub.remove(poll);
  }
}
