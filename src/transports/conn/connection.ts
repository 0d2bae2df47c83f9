/**
 * One binary long connection (PROTOCOL.md "Binary long connection"), independent of its transport: raw TCP and
 * WebSocket both feed bytes in and take bytes out through a {@link Link}, so every rule (framing, auth, ops,
 * push vs notify, timeouts, backpressure) lives here once. See docs/architecture.md "Long connection".
 *
 * Per-connection state is one object with a handful of fields: no timer (the shared TimerWheel keeps the
 * deadlines), no closure per packet, no decoder while no packet is half-read (a shared one serves the common case).
 */
import { HEADER_BYTES, OP, RET, SELECTOR_ALL, aheadOfLogAnswer, aheadOfLogErrMsg, decodeMediaChunk, parseBody, synccheckAnswer, writeHeader, type FrameDecoder } from '../../protocol/index.ts';
import { validateCall, type AttachReply, type ChatApi, type Logger, type NewsEvent, type Subscription } from '../../service/index.ts';
import { sessionEndedErrMsg, type Hub, type HubListener } from '../hub.ts';
import type { TimerWheel, WheelItem } from '../timer-wheel.ts';
import type { EdgeStats, EdgeTransport } from '../edge-stats.ts';

/**
 * The transport under a connection: what it takes to move bytes. TCP wraps a `net.Socket`, WS a `ws` WebSocket.
 * The transport calls back {@link Connection.onBytes}, {@link Connection.onDrain} and {@link Connection.onLinkClosed}.
 */
export interface Link {
  /** Bytes written and not yet handed to the kernel. */
  readonly bufferedBytes: number;
  /** The peer's address, for throttling and logs. */
  readonly remoteAddress: string;
  /** Queues bytes (one or more whole packets). */
  write(data: Buffer): void;
  /** Closes once the queued bytes are flushed. */
  end(): void;
  /** Closes at once, dropping queued bytes. */
  destroy(): void;
}

/** Limits of long connections; config.ts documents each. */
export interface ConnectionLimits {
  /** Largest packet in either direction, header included, in bytes. */
  maxPacketBytes: number;
  /** Agreed with an AUTH that proposes no heartbeatMs, in ms; idle close after 2.5 × the agreed period. */
  heartbeatMs: number;
  /** Shortest period an AUTH's proposal is agreed at, in ms (see {@link agreeHeartbeatMs}). */
  heartbeatMinMs: number;
  /** Longest period an AUTH's proposal is agreed at, in ms. */
  heartbeatMaxMs: number;
  /** Close a connection that has not authenticated within this many ms. */
  authTimeoutMs: number;
  /** Stop pushing past this many buffered outbound bytes. */
  outboundBufferBytes: number;
  /** Close past this many buffered outbound bytes. */
  outboundHardBytes: number;
  /** Close when the buffer stays above outboundBufferBytes this many ms. */
  outboundStallMs: number;
}

/** What connections share: implemented by {@link Connections}. */
export interface ConnectionContext {
  readonly api: ChatApi;
  readonly hub: Hub;
  readonly wheel: TimerWheel;
  readonly limits: ConnectionLimits;
  readonly logger: Logger;
  /** The process-wide decoder for connections with no half-read packet. */
  readonly sharedDecoder: FrameDecoder;
  /** Gives the shared decoder to the connection that now holds a partial packet in it; a fresh one replaces it. */
  replaceSharedDecoder(): void;
  /** Flushes this connection's queued packets at the end of this event-loop turn (one write per turn). */
  queueFlush(conn: Connection): void;
  /** The connection's link closed. */
  forget(conn: Connection): void;
  /** This process's answer and delivery counts (metrics). */
  readonly edgeStats: EdgeStats;
}

/** Ops whose body is an answer `{ret, …}`: counted by ret in {@link EdgeStats}. */
const ANSWER_OPS = new Set<number>([OP.AUTH_OK, OP.SEND_ACK, OP.SYNC_RESP, OP.CALL_RESP, OP.MEDIA_CHUNK_ACK, OP.ERROR]);

/** Lifecycle, in order. */
const State = {
  /** Connected, no AUTH yet: HEARTBEAT and AUTH only. */
  NEW: 0,
  /** AUTH sent, attach in flight: further packets wait. */
  AUTHENTICATING: 1,
  /** Authenticated. */
  OPEN: 2,
  /** ERROR (or nothing) queued; the link ends at the next flush. */
  CLOSING: 3,
  /** Link ended or closed: nothing more is written. */
  CLOSED: 4,
} as const;
type State = (typeof State)[keyof typeof State];

/** How long a closing link may take to flush before it is destroyed, in ms. */
const LINGER_MS = 5_000;
/** Packets a client may pipeline behind its AUTH before the attach answers. */
const MAX_QUEUED_BEFORE_AUTH = 32;
/**
 * Bytes a connection may hold in the server before it sent a whole AUTH: an AUTH body is `{sid, syncKey, heartbeatMs}`, about
 * 100 bytes, so anything bigger is not one. Without this bound an anonymous connection could park a packet of up
 * to maxPacketBytes (1 MiB) in memory for the whole AUTH deadline.
 */
const MAX_BYTES_BEFORE_AUTH = 4 * 1024;
/**
 * Body bytes a client may pipeline behind its AUTH before AUTH_OK (copies held until the attach answers). The SDK
 * waits for AUTH_OK; a client that pipelines gets room for 15 full-size text sends (16 KiB each), not for 32
 * packets of 1 MiB.
 */
const MAX_QUEUED_BYTES_BEFORE_AUTH_OK = 256 * 1024;
/** Idle close after this many heartbeat periods (PROTOCOL.md: 2.5 × heartbeatMs). */
const IDLE_HEARTBEATS = 2.5;
/** The device's key is unknown (AUTH without syncKey, or a key from another epoch): no PUSH until it syncs. */
const UNKNOWN_KEY = -1;
const BAD_JSON = Symbol('bad JSON');
const SERVER_ERROR_BODY = `{"ret":${RET.SERVER_ERROR},"errMsg":"server error"}`;

function errorBody(ret: number, errMsg: string): string {
  return JSON.stringify({ ret, errMsg });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isKey(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/**
 * The heartbeat period agreed with an AUTH (docs/protocol.md "Heartbeat"): the client's proposal clamped to
 * [heartbeatMinMs, heartbeatMaxMs], or the server's heartbeatMs when it proposes none. A proposal that is not a
 * positive whole number of ms is refused (a string of the error), not guessed at: a client that sends `"27s"`
 * or `-1` has a bug worth seeing; a number merely out of range is a preference, and is clamped.
 */
export function agreeHeartbeatMs(proposed: unknown, limits: Pick<ConnectionLimits, 'heartbeatMs' | 'heartbeatMinMs' | 'heartbeatMaxMs'>): number | string {
  if (proposed === undefined) return limits.heartbeatMs;
  if (!Number.isSafeInteger(proposed) || (proposed as number) <= 0) return 'heartbeatMs must be a positive integer (ms)';
  return Math.min(limits.heartbeatMaxMs, Math.max(limits.heartbeatMinMs, proposed as number));
}

/** A sync answer's `syncKey` and `continueFlag`, read from its text (the last top-level `"syncKey":`). */
function syncAnswerKey(body: string): { syncKey: number; isContinued: boolean } | undefined {
  // Entry JSON cannot contain an unescaped `"syncKey":` inside strings, and the top-level field follows the entries.
  const at = body.lastIndexOf('"syncKey":');
  if (at < 0) return undefined;
  const syncKey = parseInt(body.slice(at + 10, at + 30), 10);
  if (!isKey(syncKey)) return undefined;
  return { syncKey, isContinued: body.includes('"continueFlag":true', at) };
}

/** The last {@link Connection.id} handed out in this process. */
let lastConnectionId = 0;

/** A deadline on the shared wheel that ends a stalled or lingering link. Allocated only when one is needed. */
class Reaper implements WheelItem {
  deadline: number;
  readonly #conn: Connection;
  constructor(conn: Connection, deadline: number) {
    this.#conn = conn;
    this.deadline = deadline;
  }
  onDeadline(): void {
    this.#conn.reap();
  }
}

/**
 * A long connection's protocol state. Created by the transport for each accepted socket; listens to the hub for
 * its user's news once authenticated. Writes are queued and flushed once per event-loop turn as one buffer.
 */
export class Connection implements HubListener, WheelItem {
  /** `tcp` or `ws`, for stats. */
  readonly transport: string;
  /** Names this connection in the process's logs (`c` + a counter; never the sid). */
  readonly id: string;
  /** The heartbeat period agreed in AUTH_OK, in ms (the server's heartbeatMs until then); idle close after 2.5 × it. */
  heartbeatMs: number;
  uin = 0;
  sessionId = '';
  subscription: Subscription | undefined = undefined;
  /** Idle or auth deadline on the shared wheel (ms since epoch). */
  deadline: number;
  readonly #ctx: ConnectionContext;
  readonly #link: Link;
  #state: State = State.NEW;
  #sid = '';
  /** The key the device holds, as far as this connection knows (AUTH, then pushes, syncs and ACKs). */
  #key = UNKNOWN_KEY;
  /** The highest head known (AUTH_OK, news). */
  #head = 0;
  /** Selector bits of news beyond #key. */
  #selector = 0;
  /** A NOTIFY (or AUTH_OK) already announced the gap after #key. */
  #isNotified = false;
  /** A NOTIFY is due once the link drains. */
  #isNotifyOwed = false;
  #isFlushQueued = false;
  /** SYNC (or CALL of /api/sync) requests in flight: no PUSH meanwhile, or an entry could arrive twice. */
  #syncs = 0;
  /** Queued packets, flat: op, seq, body, byte length, … */
  #out: (number | string)[] | undefined;
  #outBytes = 0;
  /** Owned decoder while a packet is half-read. */
  #decoder: FrameDecoder | undefined;
  /** Packets pipelined behind AUTH: op, seq, body copy, … */
  #waiting: (number | Uint8Array)[] | undefined;
  /** Body bytes in #waiting. */
  #waitingBytes = 0;
  #reaper: Reaper | undefined;

  constructor(ctx: ConnectionContext, link: Link, transport: string) {
    this.#ctx = ctx;
    this.#link = link;
    this.transport = transport;
    this.id = `c${++lastConnectionId}`;
    this.heartbeatMs = ctx.limits.heartbeatMs;
    this.deadline = Date.now() + ctx.limits.authTimeoutMs;
    ctx.wheel.add(this);
  }

  /** Authenticated and not closing. */
  get isOpen(): boolean {
    return this.#state === State.OPEN;
  }

  /** Outbound bytes held for this connection: queued here plus buffered in the link. */
  get bufferedBytes(): number {
    return this.#outBytes + (this.#state === State.CLOSED ? 0 : this.#link.bufferedBytes);
  }

  /** Stats of this connection (tests, metrics). */
  info(): { id: string; transport: string; uin: number; sessionId: string; key: number; head: number; heartbeatMs: number; bufferedBytes: number; isOpen: boolean } {
    return {
      id: this.id,
      transport: this.transport,
      uin: this.uin,
      sessionId: this.sessionId,
      key: this.#key,
      head: this.#head,
      heartbeatMs: this.heartbeatMs,
      bufferedBytes: this.bufferedBytes,
      isOpen: this.isOpen,
    };
  }

  // ---- from the transport ------------------------------------------------------------------------------------

  /** Bytes from the peer: any split or coalescing of packets. */
  onBytes(chunk: Uint8Array): void {
    if (this.#state >= State.CLOSING) return;
    // The one edge for protocol violations (like socket.io's Client#ondata, GH-1880): the decoder and the body
    // parser report errors as values, but whatever slips through must end this connection, not escape into the
    // socket's event emitter and take the process down with every other connection.
    try {
      const decoder = this.#decoder ?? this.#ctx.sharedDecoder;
      const { packets, error } = decoder.push(chunk);
      if (this.#decoder === undefined) {
        if (decoder.pendingBytes > 0 || error) {
          this.#decoder = decoder;
          this.#ctx.replaceSharedDecoder();
        }
      } else if (decoder.pendingBytes === 0 && !error) this.#decoder = undefined;
      for (const p of packets) {
        this.#onPacket(p.op, p.seq, p.body);
        if (this.#state >= State.CLOSING) return;
      }
      if (this.#state === State.NEW && decoder.pendingBytes > MAX_BYTES_BEFORE_AUTH) {
        this.fail(RET.TOO_LARGE, `not logged in: AUTH comes first and is under ${MAX_BYTES_BEFORE_AUTH} bytes`);
        return;
      }
      // PROTOCOL.md "Binary": a framing error gets ERROR, then the server closes.
      if (error) this.fail(RET.BAD_REQUEST, `framing error ${error.code}: ${error.message}`);
    } catch (err) {
      this.#ctx.logger.error({ err, connId: this.id, uin: this.uin }, 'long connection: unexpected error');
      this.fail(RET.SERVER_ERROR, 'server error');
    }
  }

  /** The link's buffer emptied. */
  onDrain(): void {
    if (this.#reaper && this.#state < State.CLOSING) {
      this.#reaper.deadline = Infinity;
      this.#reaper = undefined;
    }
    if (this.#isNotifyOwed && this.#state === State.OPEN) {
      this.#isNotifyOwed = false;
      this.#catchUp();
    }
  }

  /** The link is gone (either side closed it). */
  onLinkClosed(): void {
    this.#state = State.CLOSED;
    this.deadline = Infinity;
    if (this.#reaper) this.#reaper.deadline = Infinity;
    this.#reaper = undefined;
    this.#out = undefined;
    this.#outBytes = 0;
    this.#waiting = undefined;
    this.#decoder = undefined;
    this.#ctx.hub.remove(this);
    this.#ctx.forget(this);
  }

  // ---- from the hub ------------------------------------------------------------------------------------------

  /** News of this user: PUSH when the device is caught up and the link keeps up, else NOTIFY once. */
  onNews(news: NewsEvent): void {
    if (this.#state !== State.OPEN || news.head <= this.#head) return;
    this.#head = news.head;
    this.#selector |= news.selector;
    if (this.#syncs === 0 && news.prevSeq === this.#key && !this.#isBackpressured()) {
      // PROTOCOL.md PUSH: the stored entry JSON spliced in, never re-encoded.
      const body = `{"entries":[${news.entries.join(',')}],"syncKey":${news.head}}`;
      // A push must fit under the soft bound too (one commit can carry many entries): else NOTIFY, and the
      // device fetches the delta at its own pace.
      if (this.bufferedBytes + HEADER_BYTES + Buffer.byteLength(body) <= this.#ctx.limits.outboundBufferBytes && this.#fits(body)) {
        this.#send(OP.PUSH, 0, body);
        this.#ctx.edgeStats.delivered(news.entries.length, news.committedAt);
        this.#moveKey(news.head);
        return;
      }
    }
    this.#notify();
  }

  /** The session ended (logout, replaced, revoked): ERROR with its code, then close. */
  onSessionEnded(ret: number): void {
    this.fail(ret, sessionEndedErrMsg(ret));
  }

  // ---- from the wheel ----------------------------------------------------------------------------------------

  /** Auth or idle deadline passed. */
  onDeadline(): void {
    if (this.#state === State.NEW || this.#state === State.AUTHENTICATING) {
      this.fail(RET.NOT_LOGGED_IN, `not logged in: send AUTH within ${this.#ctx.limits.authTimeoutMs} ms`);
    } else if (this.#state === State.OPEN) {
      this.fail(RET.BAD_REQUEST, `no packet for ${IDLE_HEARTBEATS * this.heartbeatMs} ms: send HEARTBEAT every heartbeatMs`);
    }
  }

  /** @internal A stall or linger deadline passed: drop the link. */
  reap(): void {
    this.#reaper = undefined;
    this.destroy();
  }

  // ---- closing -----------------------------------------------------------------------------------------------

  /** Sends ERROR {ret, errMsg} (seq 0) and closes after flushing it. */
  fail(ret: number, errMsg: string, seq = 0): void {
    if (this.#state >= State.CLOSING) return;
    this.#send(OP.ERROR, seq, errorBody(ret, errMsg));
    this.close();
  }

  /** Closes after flushing what is queued (packets queued during this event-loop turn still go out). */
  close(): void {
    if (this.#state >= State.CLOSING) return;
    this.#state = State.CLOSING;
    this.deadline = Infinity;
    this.#waiting = undefined;
    this.#ctx.hub.remove(this);
    this.#queueFlush();
  }

  /** Drops the link at once (shutdown). */
  destroy(): void {
    this.#state = State.CLOSED;
    this.#link.destroy();
  }

  // ---- packets -----------------------------------------------------------------------------------------------

  #onPacket(op: number, seq: number, body: Uint8Array): void {
    if (op === OP.HEARTBEAT) {
      if (this.#state === State.OPEN) this.deadline = Date.now() + IDLE_HEARTBEATS * this.heartbeatMs;
      this.#send(OP.HEARTBEAT_ACK, seq, '');
      return;
    }
    switch (this.#state) {
      case State.NEW:
        // PROTOCOL.md: before AUTH only HEARTBEAT and AUTH are accepted.
        if (op === OP.AUTH) void this.#auth(seq, this.#parse(body));
        else this.fail(RET.NOT_LOGGED_IN, 'not logged in: send AUTH first', seq);
        return;
      case State.AUTHENTICATING:
        // A client may pipeline requests behind AUTH; they run once the attach answers. Bodies are views into
        // the read buffer, so they are copied (Uint8Array's slice: a Buffer's own slice() is a view).
        this.#waiting ??= [];
        if (this.#waiting.length >= 3 * MAX_QUEUED_BEFORE_AUTH) {
          this.fail(RET.BAD_REQUEST, `more than ${MAX_QUEUED_BEFORE_AUTH} packets before AUTH_OK`);
          return;
        }
        this.#waitingBytes += body.length;
        if (this.#waitingBytes > MAX_QUEUED_BYTES_BEFORE_AUTH_OK) {
          this.fail(RET.TOO_LARGE, `more than ${MAX_QUEUED_BYTES_BEFORE_AUTH_OK} bytes before AUTH_OK`);
          return;
        }
        this.#waiting.push(op, seq, Uint8Array.prototype.slice.call(body));
        return;
      case State.OPEN:
        this.deadline = Date.now() + IDLE_HEARTBEATS * this.heartbeatMs;
        this.#dispatch(op, seq, body);
        return;
      default:
        return;
    }
  }

  #dispatch(op: number, seq: number, raw: Uint8Array): void {
    switch (op) {
      case OP.SEND: {
        const body = this.#parse(raw);
        if (body === BAD_JSON) this.#send(OP.SEND_ACK, seq, errorBody(RET.BAD_REQUEST, 'body is not valid JSON'));
        else void this.#call(OP.SEND_ACK, seq, '/api/sendmsg', body);
        return;
      }
      case OP.SYNC: {
        const body = this.#parse(raw);
        if (body === BAD_JSON) this.#send(OP.SYNC_RESP, seq, errorBody(RET.BAD_REQUEST, 'body is not valid JSON'));
        else void this.#sync(OP.SYNC_RESP, seq, body);
        return;
      }
      case OP.ACK:
        this.#ack(seq, this.#parse(raw));
        return;
      case OP.CALL: {
        const body = this.#parse(raw);
        if (!isObject(body) || typeof body.path !== 'string') {
          this.#send(OP.CALL_RESP, seq, errorBody(RET.BAD_REQUEST, body === BAD_JSON ? 'body is not valid JSON' : 'CALL body must be {path, body}'));
        } else if (body.path === '/api/sync') void this.#sync(OP.CALL_RESP, seq, body.body);
        else if (body.path === '/api/synccheck') void this.#synccheck(seq, body.body);
        else void this.#call(OP.CALL_RESP, seq, body.path, body.body);
        return;
      }
      case OP.MEDIA_CHUNK: {
        // Raw bytes, not JSON: a small header then the chunk. The body is a view into the read buffer, so the
        // chunk is copied before the call goes async (docs/protocol.md "MEDIA_CHUNK").
        const chunk = decodeMediaChunk(raw);
        if (typeof chunk === 'string') this.#send(OP.MEDIA_CHUNK_ACK, seq, errorBody(RET.BAD_REQUEST, chunk));
        else void this.#call(OP.MEDIA_CHUNK_ACK, seq, '/api/media/chunk', { ...chunk, bytes: Uint8Array.prototype.slice.call(chunk.bytes) });
        return;
      }
      case OP.AUTH:
        this.#send(OP.ERROR, seq, errorBody(RET.BAD_REQUEST, 'already authenticated'));
        return;
      default:
        // Unknown (or server-to-client) op: answered, not fatal, so a newer client can probe for ops.
        this.#send(OP.ERROR, seq, errorBody(RET.BAD_REQUEST, `unknown op ${op}`));
    }
  }

  #parse(body: Uint8Array): unknown {
    try {
      return parseBody(body);
    } catch {
      return BAD_JSON;
    }
  }

  async #auth(seq: number, body: unknown): Promise<void> {
    // Three fields; every request that reaches the service is validated there by the API schemas.
    if (!isObject(body) || typeof body.sid !== 'string' || body.sid.length === 0 || body.sid.length > 256) {
      this.fail(RET.BAD_REQUEST, 'AUTH body must be {sid, syncKey?, heartbeatMs?}', seq);
      return;
    }
    if (body.syncKey !== undefined && !isKey(body.syncKey)) {
      this.fail(RET.BAD_REQUEST, 'syncKey must be a non-negative integer', seq);
      return;
    }
    const heartbeatMs = agreeHeartbeatMs(body.heartbeatMs, this.#ctx.limits);
    if (typeof heartbeatMs === 'string') {
      this.fail(RET.BAD_REQUEST, heartbeatMs, seq);
      return;
    }
    this.heartbeatMs = heartbeatMs;
    const sid = body.sid;
    const syncKey = body.syncKey as number | undefined;
    this.#state = State.AUTHENTICATING;
    // The race-free attach (Hub.listen): mark, attach, listen, then replay what arrived in between.
    const hub = this.#ctx.hub;
    const mark = hub.mark();
    let r: AttachReply;
    try {
      r = await this.#ctx.api.attach(sid, syncKey, this.#link.remoteAddress);
    } catch (err) {
      this.#ctx.logger.error({ err, connId: this.id }, 'long connection: attach failed');
      r = { ret: RET.SERVER_ERROR, errMsg: 'server error' };
    }
    if (this.#state !== State.AUTHENTICATING) {
      r.subscription?.release();
      return;
    }
    if (r.ret !== RET.OK) {
      this.fail(r.ret, r.errMsg ?? 'not logged in', seq);
      return;
    }
    this.uin = r.uin!;
    this.sessionId = r.sessionId!;
    this.#sid = sid;
    this.#head = r.head!;
    // A key ahead of the head comes from another epoch: the device resyncs from 0 (AUTH_OK carries the epoch).
    this.#key = syncKey === undefined || syncKey > this.#head ? UNKNOWN_KEY : syncKey;
    this.#selector = r.selector ?? 0;
    // AUTH_OK announces the head: a device behind it syncs without a NOTIFY.
    this.#isNotified = this.#head > this.#key;
    this.#state = State.OPEN;
    const idleDeadline = Date.now() + IDLE_HEARTBEATS * heartbeatMs;
    const isEarlier = idleDeadline < this.deadline;
    this.deadline = idleDeadline;
    // The wheel re-checks pushed-back deadlines by itself; an earlier one needs its own slot.
    if (isEarlier) this.#ctx.wheel.add(this);
    const missed = hub.listen(this, r.subscription!, mark, this.#head);
    if (missed !== 'overflow' && 'endedRet' in missed) {
      this.fail(missed.endedRet, sessionEndedErrMsg(missed.endedRet), seq);
      return;
    }
    this.#send(
      OP.AUTH_OK,
      seq,
      `{"ret":0,"uin":${this.uin},"syncKey":${this.#head},"epoch":${JSON.stringify(r.epoch ?? '')},"heartbeatMs":${heartbeatMs}}`,
    );
    if (missed === 'overflow') {
      this.#selector = SELECTOR_ALL;
      this.#isNotified = false;
      this.#notify();
    } else for (const n of missed.news) this.onNews(n);
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting) {
      for (let i = 0; i < waiting.length && this.#state === State.OPEN; i += 3) {
        this.#onPacket(waiting[i] as number, waiting[i + 1] as number, waiting[i + 2] as Uint8Array);
      }
    }
  }

  async #call(op: number, seq: number, path: string, body: unknown): Promise<void> {
    let answer: string;
    try {
      // The request id names the connection and the packet: `c12/7` is packet seq 7 on connection c12.
      const reply = await this.#ctx.api.call(path, body, { sid: this.#sid, ip: this.#link.remoteAddress, requestId: `${this.id}/${seq}` });
      answer = reply.body;
    } catch (err) {
      this.#ctx.logger.error({ err, connId: this.id, uin: this.uin, path }, 'long connection: call failed');
      answer = SERVER_ERROR_BODY;
    }
    this.#answer(op, seq, answer);
  }

  /** SYNC and CALL of /api/sync: the answer moves this connection's key; no PUSH while one is in flight. */
  async #sync(op: number, seq: number, body: unknown): Promise<void> {
    this.#syncs++;
    let answer: string;
    try {
      const ctx = { sid: this.#sid, ip: this.#link.remoteAddress, requestId: `${this.id}/${seq}` };
      let reply = await this.#ctx.api.call('/api/sync', body, ctx);
      // A page must fit in one packet: ask again for fewer entries until it does (an entry is ≤ ~17 KiB).
      let limit = isObject(body) && typeof body.limit === 'number' ? Math.min(body.limit, 1000) : 200;
      while (reply.ret === RET.OK && !this.#fits(reply.body) && limit > 1 && this.#state === State.OPEN) {
        limit = Math.max(1, limit >> 1);
        reply = await this.#ctx.api.call('/api/sync', { ...(body as object), limit }, ctx);
      }
      answer = reply.body;
      if (reply.ret === RET.OK && this.#state === State.OPEN) {
        const k = syncAnswerKey(answer);
        if (k) {
          this.#syncs--;
          this.#answer(op, seq, answer);
          this.#moveKey(k.syncKey);
          // While more pages remain the device keeps syncing; a NOTIFY now would only repeat that.
          if (!k.isContinued) this.#catchUp();
          return;
        }
      }
    } catch (err) {
      this.#ctx.logger.error({ err, connId: this.id, uin: this.uin }, 'long connection: sync failed');
      answer = SERVER_ERROR_BODY;
    }
    this.#syncs--;
    this.#answer(op, seq, answer);
    this.#catchUp();
  }

  /**
   * CALL of /api/synccheck answers at once (timeout 0): on a long connection NOTIFY and PUSH replace the parked
   * poll, so a held request would only duplicate them. The presented key counts as acknowledged, as over HTTP.
   */
  async #synccheck(seq: number, body: unknown): Promise<void> {
    let answer: string;
    try {
      const q = validateCall('/api/synccheck', body);
      const r = await this.#ctx.api.attach(this.#sid, q.syncKey, this.#link.remoteAddress);
      // A one-shot check: NOTIFY and PUSH already follow this user here, so the attach's hold is not kept.
      r.subscription?.release();
      if (r.ret !== RET.OK) answer = errorBody(r.ret, r.errMsg ?? 'not logged in');
      else if (q.syncKey > r.head!) answer = aheadOfLogAnswer(q.syncKey, r.head!, r.epoch ?? '');
      else {
        answer = synccheckAnswer(r.selector ?? 0, r.head!, r.epoch ?? '');
        this.#moveKey(q.syncKey);
        this.#catchUp();
      }
    } catch (err) {
      const e = err as { ret?: number; errMsg?: string };
      if (typeof e.ret === 'number') answer = errorBody(e.ret, e.errMsg ?? 'bad request');
      else {
        this.#ctx.logger.error({ err, connId: this.id, uin: this.uin }, 'long connection: synccheck failed');
        answer = SERVER_ERROR_BODY;
      }
    }
    this.#answer(OP.CALL_RESP, seq, answer);
  }

  /** ACK {syncKey}: records the device's key; no answer unless it is refused. */
  #ack(seq: number, body: unknown): void {
    const key = isObject(body) ? body.syncKey : undefined;
    if (!isKey(key)) {
      this.#send(OP.ERROR, seq, errorBody(RET.BAD_REQUEST, body === BAD_JSON ? 'body is not valid JSON' : 'ACK body must be {syncKey}'));
      return;
    }
    if (key > this.#head) {
      this.#send(OP.ERROR, seq, errorBody(RET.BAD_REQUEST, aheadOfLogErrMsg(key, this.#head)));
      return;
    }
    this.#ctx.api.ack(this.sessionId, key);
    this.#moveKey(key);
    this.#catchUp();
  }

  /** Writes a response unless the connection is gone; an answer too large for one packet becomes ret 5. */
  #answer(op: number, seq: number, body: string): void {
    if (this.#state >= State.CLOSED) return;
    if (!this.#fits(body)) {
      body = errorBody(RET.TOO_LARGE, `answer exceeds the packet limit of ${this.#ctx.limits.maxPacketBytes} bytes; use HTTP`);
    }
    this.#send(op, seq, body);
  }

  // ---- keys, push and notify ---------------------------------------------------------------------------------

  #moveKey(key: number): void {
    if (key <= this.#key) return;
    this.#key = key;
    this.#isNotified = false;
    if (key >= this.#head) {
      this.#selector = 0;
      // A sync (or synccheck) read the store past the news heard here (news from another node comes late, or
      // only through the catch-up sweep while Redis is down): the key is a head that exists. Without this, that
      // news arriving later found a gap that was not there, sent a NOTIFY the device ignores (it holds that key)
      // and stayed "notified" with no sync to clear it, swallowing every later catch-up (chaos finding 2).
      this.#head = key;
    }
  }

  /** NOTIFY if news lies beyond the device's key and no sync is in flight to fetch it. */
  #catchUp(): void {
    if (this.#state === State.OPEN && this.#syncs === 0 && this.#head > this.#key) this.#notify();
  }

  /** NOTIFY once until the key moves; while the link is backpressured, owe it until the link drains. */
  #notify(): void {
    if (this.#isNotified || this.#syncs > 0) return;
    if (this.#isBackpressured()) {
      this.#isNotifyOwed = true;
      return;
    }
    this.#isNotified = true;
    this.#send(OP.NOTIFY, 0, `{"selector":${this.#selector || SELECTOR_ALL},"syncKey":${this.#head}}`);
  }

  #isBackpressured(): boolean {
    return this.bufferedBytes > this.#ctx.limits.outboundBufferBytes;
  }

  #fits(body: string): boolean {
    const max = this.#ctx.limits.maxPacketBytes - HEADER_BYTES;
    // A UTF-8 byte count only when the string could be too long.
    return body.length * 3 <= max || Buffer.byteLength(body) <= max;
  }

  // ---- output ------------------------------------------------------------------------------------------------

  #send(op: number, seq: number, body: string): void {
    if (this.#state === State.CLOSED) return;
    const bytes = HEADER_BYTES + (body.length === 0 ? 0 : Buffer.byteLength(body));
    (this.#out ??= []).push(op, seq, body, bytes);
    this.#outBytes += bytes;
    // One place counts every answer, whichever rule produced it (docs/operations.md "Metrics").
    if (ANSWER_OPS.has(op)) this.#ctx.edgeStats.answeredBody(this.transport as EdgeTransport, body);
    this.#queueFlush();
  }

  #queueFlush(): void {
    if (this.#isFlushQueued) return;
    this.#isFlushQueued = true;
    this.#ctx.queueFlush(this);
  }

  /** @internal Writes every queued packet as one buffer; called by the flush queue once per event-loop turn. */
  flush(): void {
    this.#isFlushQueued = false;
    if (this.#state === State.CLOSED) return;
    const out = this.#out;
    if (out) {
      const buf = Buffer.allocUnsafe(this.#outBytes);
      let at = 0;
      for (let i = 0; i < out.length; i += 4) {
        const bytes = out[i + 3] as number;
        writeHeader(buf, at, bytes, out[i] as number, out[i + 1] as number);
        if (bytes > HEADER_BYTES) buf.write(out[i + 2] as string, at + HEADER_BYTES, 'utf8');
        at += bytes;
      }
      this.#out = undefined;
      this.#outBytes = 0;
      this.#link.write(buf);
    }
    if (this.#state === State.CLOSING) {
      this.#state = State.CLOSED;
      this.#link.end();
      this.#watch(Date.now() + LINGER_MS);
      return;
    }
    const buffered = this.#link.bufferedBytes;
    const { outboundBufferBytes, outboundHardBytes, outboundStallMs } = this.#ctx.limits;
    if (buffered > outboundHardBytes) {
      // Past the hard bound nothing more can be queued, not even ERROR: the peer is not reading it.
      this.#ctx.logger.warn({ connId: this.id, uin: this.uin, buffered }, 'long connection: outbound buffer over the hard bound; closing');
      this.destroy();
    } else if (buffered > outboundBufferBytes && !this.#reaper) this.#watch(Date.now() + outboundStallMs);
  }

  #watch(deadline: number): void {
    if (this.#reaper) this.#reaper.deadline = Infinity;
    this.#reaper = new Reaper(this, deadline);
    this.#ctx.wheel.add(this.#reaper);
  }
}
