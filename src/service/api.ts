/**
 * The service's public API: what transports (in this process or in gateway processes over IPC) call.
 * Everything crossing a process boundary is plain data, defined here beside the API, never inside core.
 * See docs/architecture.md "Processes".
 */
import type { BusEvent } from '../core/ports.ts';
import type { Subscription } from './subscriptions.ts';

export type { BusEvent, FanoutEvent, NewsEvent, SessionEndedEvent } from '../core/ports.ts';

/** Who is calling. */
export interface CallContext {
  /** Bearer token, for calls that need a session. */
  sid?: string;
  /** Remote address, for throttling. */
  ip: string;
  /** For logs. */
  requestId?: string;
  /** The Host (name[:port]) the request reached, over HTTP: `/api/gateways` of a node on a wildcard address lists it. */
  host?: string;
}

/**
 * An answer, ready for the wire: `body` is the JSON text (with `ret`, and `errMsg` when ret ≠ 0). Built once
 * by the service so sync pages splice stored entry JSON without re-encoding.
 */
export interface Reply {
  ret: number;
  body: string;
  /** Seconds, with ret 1205. */
  retryAfterSec?: number;
}

/** An answer that may be held (a long poll): `cancel()` stops the wait when the client went away. */
export interface PendingReply {
  reply: Promise<Reply>;
  /** Stops waiting (no-op once answered); the reply then resolves with nothing anyone reads. */
  cancel(): void;
}

/** Answer to {@link ChatApi.attach}. */
export interface AttachReply {
  ret: number;
  errMsg?: string;
  sessionId?: string;
  uin?: number;
  username?: string;
  /** The user's head. */
  head?: number;
  epoch?: string;
  /** Bits of what lies after the presented key (0 if none or no key). */
  selector?: number;
  /**
   * With ret 0: this attach's hold on the user's news, delivered to this process until released. Its `release()`
   * is the only way to end it (a listener hands it to the {@link Hub}, whose `remove` releases it).
   */
  subscription?: Subscription;
}

/**
 * What a transport needs from the sync service. Implemented by ChatService in-process and by the IPC client
 * in gateway processes; both keep the same order guarantee: events about a commit arrive after that commit's
 * replies were sent... and in commit order.
 */
export interface ChatApi {
  /** Runs one API call (validation included). */
  call(path: string, body: unknown, ctx: CallContext): Promise<Reply>;
  /**
   * Authenticates a long-lived listener (synccheck, TCP/WS connection), records `syncKey` as acknowledged if
   * given, and starts delivering news of that user to this process until the reply's `subscription` is released.
   * The subscription is taken before the head is read, so no commit falls between the two.
   */
  attach(sid: string, syncKey: number | undefined, ip: string): Promise<AttachReply>;
  /**
   * Answers whether `sid` names a live session (ret 0 with its `uin` and `username`, or the ret and errMsg a call
   * with it would get), without running a call: a transport asks it before reading a large request body, so an
   * unauthenticated client never makes the server read, buffer or store its bytes; the admin route asks whose
   * session it is.
   */
  checkSession(sid: string | undefined): Promise<Reply>;
  /**
   * `/api/qrlogin/poll` (validation included), held until the QR login's state moves on, it expires, or the poll's
   * timeout passes (docs/protocol.md "QR login"). Cancel it when the client goes away: a cancelled poll never
   * collects the session of a confirmed login.
   */
  pollQrLogin(query: unknown, ctx: CallContext): PendingReply;
  /** Records a device's acknowledged key (ACK op); fire-and-forget. */
  ack(sessionId: string, syncKey: number): void;
  /** Listens to post-commit events; returns the unsubscribe function. */
  onEvents(listener: (events: readonly BusEvent[]) => void): () => void;
}

/** Messages from a gateway process to the core process. */
export type GatewayToCore =
  | { t: 'call'; id: number; path: string; body: unknown; ctx: CallContext }
  | { t: 'attach'; id: number; sid: string; syncKey: number | undefined; ip: string }
  /** {@link ChatApi.checkSession}; answered with a `reply`. */
  | { t: 'checkSession'; id: number; sid: string | undefined }
  /** Releases the subscription of attach `id`. */
  | { t: 'detach'; id: number }
  /** {@link ChatApi.pollQrLogin}; answered with a `reply`, or stopped by a `cancelQrPoll` with the same id. */
  | { t: 'qrPoll'; id: number; query: unknown; ctx: CallContext }
  | { t: 'cancelQrPoll'; id: number }
  /** Acknowledged keys, coalesced per session by the gateway (sessionId, syncKey pairs). */
  | { t: 'acks'; acks: [string, number][] }
  /** The core's readiness (`/readyz`: can commit, bus reachable, not draining); answered with a `reply`. */
  | { t: 'ready'; id: number }
  /** The admin dashboard's data (`/api/admin/stats`, docs/operations.md "Dashboard"); answered with a `reply`. */
  | { t: 'adminStats'; id: number };

/** Messages from the core process to a gateway process. */
export type CoreToGateway =
  | { t: 'reply'; id: number; reply: Reply }
  /** An attach's answer; with ret 0 its subscription is held until a `detach` with the same id. */
  | { t: 'attached'; id: number; reply: Omit<AttachReply, 'subscription'> }
  | { t: 'events'; events: BusEvent[] };
