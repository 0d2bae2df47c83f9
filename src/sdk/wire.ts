/**
 * The packet-level long connection (PROTOCOL.md "Binary long connection") over an abstract byte link: encode and
 * decode with the protocol's frame codec, correlate responses to requests by packet seq, hand server-initiated
 * PUSH / NOTIFY / ERROR to a handler, send heartbeats and notice a dead link.
 *
 * Built to be driven 100k times in one process by the load tool: a connection is one object with a decoder, a few
 * numbers and a lazily made map of pending requests; a handler object may be shared by every connection (it gets
 * the connection as an argument); nothing allocates a closure per packet; one {@link WireTicker} interval serves
 * the heartbeats and deadlines of every connection instead of timers per connection.
 */
import { DEFAULT_MAX_PACKET_BYTES, FrameDecoder, OP, OP_NAME, encodePacket, parseBody, type Entry } from '../protocol/index.ts';
import type { TransportName } from './types.ts';

/** A duplex byte stream the wire runs on (a TCP socket, a WebSocket carrying binary messages). */
export interface ByteLink {
  /** Queues bytes for sending. Ignored after close. */
  send(data: Uint8Array): void;
  /** Closes the link; the handler's `onLinkClose` follows (once). */
  close(): void;
}

/** What a link reports to its owner. Each method is called on the owner object, so links need no closures. */
export interface ByteLinkHandler {
  /** The link is open and may send. */
  onLinkOpen(): void;
  /** Bytes arrived: any split or coalescing of packets. The chunk may be reused after the call returns. */
  onLinkData(chunk: Uint8Array): void;
  /** The link closed or failed to open; called once. */
  onLinkClose(reason: string): void;
}

/** Opens a link to `url` and reports to `handler`. */
export type LinkConnect = (url: string, handler: ByteLinkHandler) => ByteLink;

/** A way to reach a gateway of one transport: `tcpConnector()` (src/sdk/node) or `webSocketConnector()`. */
export interface Connector {
  transport: Exclude<TransportName, 'http'>;
  connect: LinkConnect;
}

/** AUTH_OK body: the server's head, the log's epoch and the heartbeat period. */
export interface AuthOk {
  ret: number;
  errMsg?: string;
  uin: number;
  syncKey: number;
  epoch: string;
  heartbeatMs: number;
}

/** PUSH body: the delta itself, sent only when it directly follows the device's key on this connection. */
export interface PushBody {
  entries: Entry[];
  syncKey: number;
  /** The key the delta follows, when the server says so (an addition to PROTOCOL.md's `{entries, syncKey}`). */
  prevSyncKey?: number;
}

/** NOTIFY body: news after the device's key. */
export interface NotifyBody {
  selector: number;
  syncKey: number;
}

/** ERROR body. */
export interface ErrorBody {
  ret: number;
  errMsg: string;
}

/**
 * Receives the server-initiated packets and the close of a {@link WireConnection}. One handler object may serve
 * many connections: each call names the connection.
 */
export interface WireHandler {
  /** A PUSH arrived. */
  onPush(conn: WireConnection, body: PushBody): void;
  /** A NOTIFY arrived. */
  onNotify(conn: WireConnection, body: NotifyBody): void;
  /** An ERROR arrived (after a framing error the server closes; 1100/1101 mean the session ended). */
  onServerError(conn: WireConnection, body: ErrorBody): void;
  /** The connection closed (after `open` resolved or not); pending requests were rejected just before. */
  onClose(conn: WireConnection, reason: string): void;
  /** A response whose seq has no pending promise (requests sent with `post`). */
  onResponse?(conn: WireConnection, op: number, seq: number, body: any): void;
  /**
   * A HEARTBEAT the connection sent by itself was answered: the link had been quiet for `gapMs` (no packet either
   * way) and survived it. Feeds the adaptive heartbeat ({@link HeartbeatTuner}).
   */
  onHeartbeatAck?(conn: WireConnection, gapMs: number): void;
}

/** A request failed because the connection closed or timed out; `ret` is -1 so it never matches a server code. */
export class WireClosedError extends Error {
  readonly ret = -1;
  constructor(reason: string) {
    super(reason);
    this.name = 'WireClosedError';
  }
}

/** Something the ticker checks. */
interface Ticking {
  tick(now: number): void;
}

/**
 * One interval that drives heartbeats and deadlines of many connections. `now` is read once per tick and shared,
 * so hot paths (each packet) never call `Date.now()`. The interval is unref'd in Node and stops when empty.
 */
export class WireTicker {
  readonly tickMs: number;
  /** Milliseconds since the epoch, as of the last tick (or the last add). */
  now = Date.now();
  readonly #members = new Set<Ticking>();
  #timer: ReturnType<typeof setInterval> | undefined;

  /** @param tickMs period of the checks, in ms. @default 250 */
  constructor(tickMs = 250) {
    this.tickMs = tickMs;
  }

  /** Connections being watched. */
  get size(): number {
    return this.#members.size;
  }

  /** @internal */
  add(member: Ticking): void {
    this.now = Date.now();
    this.#members.add(member);
    if (!this.#timer) {
      this.#timer = setInterval(() => this.#tick(), this.tickMs);
      (this.#timer as { unref?: () => void }).unref?.();
    }
  }

  /** @internal */
  delete(member: Ticking): void {
    this.#members.delete(member);
    if (this.#members.size === 0 && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #tick(): void {
    const now = (this.now = Date.now());
    for (const m of this.#members) m.tick(now);
  }
}

let sharedTicker: WireTicker | undefined;

/** The ticker connections use when none is given: one per JS realm. */
export function defaultTicker(): WireTicker {
  return (sharedTicker ??= new WireTicker());
}

/** Options of {@link WireConnection}. */
export interface WireOptions {
  /** Largest packet accepted, header included, in bytes. @default 1048576 (1 MiB, PROTOCOL.md) */
  maxPacketBytes?: number;
  /** How long `open` + `auth` may take, in ms. @default 10000 (the server's own auth timeout) */
  connectTimeoutMs?: number;
  /** How long a request waits for its response before the connection is deemed dead, in ms. @default 20000 */
  requestTimeoutMs?: number;
  /** How long a HEARTBEAT may wait for HEARTBEAT_ACK, in ms. @default heartbeatMs from AUTH_OK */
  heartbeatAckTimeoutMs?: number;
  /** The ticker driving heartbeats and deadlines. @default defaultTicker() */
  ticker?: WireTicker;
}

interface Pending {
  resolve(body: any): void;
  reject(err: Error): void;
  deadline: number;
}

const enum Phase {
  New,
  Opening,
  Open,
  Authed,
  Closed,
}

/** Liveness rule (PROTOCOL.md): the server closes after 2.5 × heartbeatMs without a packet; so does the client. */
const DEAD_AFTER_HEARTBEATS = 2.5;

/**
 * One long connection. Lifecycle: `open(connect, url)` → `auth(sid, syncKey)` → requests (`send`, `sync`, `call`,
 * `request`, `post`) and server packets to the handler → `close()`. After AUTH_OK it sends HEARTBEAT whenever it
 * has sent nothing, or heard nothing, for `heartbeatMs`, and closes itself when no packet arrived for
 * 2.5 × `heartbeatMs` or a HEARTBEAT went unanswered for `heartbeatAckTimeoutMs` — browsers do not always report
 * a dead socket, so the client must notice by itself.
 */
export class WireConnection implements ByteLinkHandler {
  /** Free for the owner (the load tool keeps its per-connection record here). */
  tag: unknown;
  readonly #handler: WireHandler;
  readonly #ticker: WireTicker;
  readonly #decoder: FrameDecoder;
  readonly #connectTimeoutMs: number;
  readonly #requestTimeoutMs: number;
  readonly #heartbeatAckTimeoutMs: number | undefined;
  #link: ByteLink | undefined;
  #phase = Phase.New;
  #pending: Map<number, Pending> | undefined;
  #nextSeq = 1;
  #heartbeatMs = 0;
  /** The period heartbeats go at: the agreed one, or shorter (adaptive heartbeat). */
  #intervalMs = 0;
  /** How long the link had been quiet when the outstanding automatic HEARTBEAT went (0: none outstanding). */
  #heartbeatGapMs = 0;
  /** The period a link died silently at (0: it did not). */
  #silentDeathMs = 0;
  #hasServerError = false;
  #lastRecvAt = 0;
  #lastSendAt = 0;
  #heartbeatSentAt = 0;
  #deadline = 0;
  #openWaiter: Pending | undefined;
  #closeReason = '';

  constructor(handler: WireHandler, options: WireOptions = {}) {
    this.#handler = handler;
    this.#ticker = options.ticker ?? defaultTicker();
    this.#decoder = new FrameDecoder(options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES);
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 20_000;
    this.#heartbeatAckTimeoutMs = options.heartbeatAckTimeoutMs;
  }

  /** True between a resolved `open` and the close. */
  get isOpen(): boolean {
    return this.#phase === Phase.Open || this.#phase === Phase.Authed;
  }

  /** True after AUTH_OK and before the close. */
  get isAuthed(): boolean {
    return this.#phase === Phase.Authed;
  }

  /** True once closed. */
  get isClosed(): boolean {
    return this.#phase === Phase.Closed;
  }

  /** Why it closed ('' while open). */
  get closeReason(): string {
    return this.#closeReason;
  }

  /** The heartbeat period agreed in AUTH_OK (0 before): the longest gap the server allows (it closes after 2.5 × it). */
  get heartbeatMs(): number {
    return this.#heartbeatMs;
  }

  /** The period heartbeats go at now, in ms: the agreed one unless set shorter. */
  get heartbeatIntervalMs(): number {
    return this.#intervalMs;
  }

  /**
   * Heartbeat at this period from now on; clamped to (0, the agreed period]. Ignored before AUTH_OK. A shorter period
   * restarts the liveness clock (as if a packet had just come): a link quiet for longer than the new period under
   * the old one is not dead for it.
   */
  set heartbeatIntervalMs(ms: number) {
    if (this.#heartbeatMs <= 0 || ms <= 0) return;
    const next = Math.min(ms, this.#heartbeatMs);
    if (next < this.#intervalMs) {
      this.#lastRecvAt = this.#ticker.now;
      if (this.#heartbeatSentAt) this.#heartbeatSentAt = this.#ticker.now;
    }
    this.#intervalMs = next;
  }

  /**
   * The heartbeat period at which this connection died silently, or 0: set when it closed, without an ERROR from
   * the server and not by its owner, while a HEARTBEAT it sent by itself went unanswered (or no packet came for
   * 2.5 periods) — what a NAT or proxy dropping an idle link looks like.
   */
  get silentDeathMs(): number {
    return this.#silentDeathMs;
  }

  /** Requests waiting for their response. */
  get pendingCount(): number {
    return this.#pending?.size ?? 0;
  }

  /** Opens the link; resolves when it is open, rejects with {@link WireClosedError} if it fails or times out. */
  open(connect: LinkConnect, url: string): Promise<void> {
    if (this.#phase !== Phase.New) return Promise.reject(new Error('WireConnection.open: already used'));
    this.#phase = Phase.Opening;
    this.#deadline = Date.now() + this.#connectTimeoutMs;
    this.#ticker.add(this);
    return new Promise<void>((resolve, reject) => {
      this.#openWaiter = { resolve, reject, deadline: this.#deadline };
      try {
        this.#link = connect(url, this);
      } catch (err) {
        this.#closeNow(`cannot connect to ${url}: ${(err as Error).message}`);
      }
    });
  }

  /**
   * Sends AUTH `{sid, syncKey?, heartbeatMs?}` and resolves with AUTH_OK's body. A refusal (the server answers
   * ERROR, e.g. ret 1100) resolves with that body too: check `ret`. Heartbeats start on success, at the period
   * AUTH_OK agreed (the server clamps a proposed `heartbeatMs` to its range; docs/protocol.md "Heartbeat").
   */
  async auth(sid: string, syncKey?: number, heartbeatMs?: number): Promise<AuthOk> {
    const body = await this.request(
      OP.AUTH,
      { sid, ...(syncKey === undefined ? {} : { syncKey }), ...(heartbeatMs === undefined ? {} : { heartbeatMs }) },
      this.#deadline || undefined,
    );
    if (body && body.ret === 0 && this.#phase === Phase.Open) {
      this.#phase = Phase.Authed;
      this.#heartbeatMs = this.#intervalMs = Number(body.heartbeatMs) > 0 ? Number(body.heartbeatMs) : 30_000;
      this.#lastRecvAt = this.#ticker.now;
    }
    return body as AuthOk;
  }

  /** SEND (as `/api/sendmsg`) → SEND_ACK's body. */
  send(body: object): Promise<any> {
    return this.request(OP.SEND, body);
  }

  /** SYNC `{syncKey, limit?}` → SYNC_RESP's body. */
  sync(syncKey: number, limit?: number): Promise<any> {
    return this.request(OP.SYNC, limit === undefined ? { syncKey } : { syncKey, limit });
  }

  /** CALL `{path, body}` → CALL_RESP's body: the answer of that HTTP API call. */
  call(path: string, body: unknown): Promise<any> {
    return this.request(OP.CALL, { path, body: body ?? {} });
  }

  /** ACK `{syncKey}`: confirms every entry ≤ syncKey (no response). */
  ack(syncKey: number): void {
    this.#write(OP.ACK, 0, { syncKey });
  }

  /** Sends HEARTBEAT now (the connection also does this by itself). */
  heartbeat(): void {
    if (!this.#heartbeatSentAt) this.#heartbeatSentAt = this.#ticker.now || 1;
    this.#write(OP.HEARTBEAT, 0, undefined);
  }

  /**
   * Sends a request and resolves with its response body (any op answering this seq, ERROR included). Rejects with
   * {@link WireClosedError} when the connection closes first or the response does not come within
   * `requestTimeoutMs` (the connection is then closed: a live server always answers).
   */
  request(op: number, body: object | undefined, deadline?: number): Promise<any> {
    if (!this.isOpen) return Promise.reject(new WireClosedError(this.#closeReason || 'not open'));
    const seq = this.#takeSeq();
    return new Promise((resolve, reject) => {
      (this.#pending ??= new Map()).set(seq, { resolve, reject, deadline: deadline ?? this.#ticker.now + this.#requestTimeoutMs });
      this.#write(op, seq, body);
    });
  }

  /** Sends a request without a promise; its response goes to `handler.onResponse`. Returns the packet seq (0 if closed). */
  post(op: number, body: object | undefined): number {
    if (!this.isOpen) return 0;
    const seq = this.#takeSeq();
    this.#write(op, seq, body);
    return seq;
  }

  /** Closes the connection; pending requests reject; the handler's `onClose` runs once. */
  close(reason = 'closed by client'): void {
    this.#closeNow(reason);
  }

  // ---- ByteLinkHandler ---------------------------------------------------------------------------------------

  /** @internal */
  onLinkOpen(): void {
    if (this.#phase !== Phase.Opening) return;
    this.#phase = Phase.Open;
    this.#lastRecvAt = this.#lastSendAt = this.#ticker.now;
    const waiter = this.#openWaiter;
    this.#openWaiter = undefined;
    waiter?.resolve(undefined);
  }

  /** @internal */
  onLinkData(chunk: Uint8Array): void {
    if (this.#phase === Phase.Closed) return;
    this.#lastRecvAt = this.#ticker.now;
    const { packets, error } = this.#decoder.push(chunk);
    for (let i = 0; i < packets.length && !this.isClosed; i++) {
      const p = packets[i]!;
      let body: any;
      try {
        body = parseBody(p.body);
      } catch {
        this.#closeNow(`bad body in ${OP_NAME[p.op] ?? p.op} packet`);
        return;
      }
      this.#dispatch(p.op, p.seq, body);
    }
    // A framing error from the server: nothing after it can be trusted.
    if (error && !this.isClosed) this.#closeNow(`framing error from server: ${error.message}`);
  }

  /** @internal */
  onLinkClose(reason: string): void {
    // Closed under us while our HEARTBEAT was unanswered and the server said nothing: a NAT or proxy dropped it.
    if (this.#heartbeatGapMs && !this.#hasServerError) this.#silentDeathMs = this.#intervalMs;
    this.#closeNow(reason || 'link closed', true);
  }

  /** @internal called by the ticker. */
  tick(now: number): void {
    const phase = this.#phase;
    if (phase === Phase.Opening || phase === Phase.Open) {
      if (now >= this.#deadline) this.#closeNow(phase === Phase.Opening ? 'connect timeout' : 'auth timeout');
      else this.#expirePending(now);
      return;
    }
    if (phase !== Phase.Authed) return;
    const hb = this.#intervalMs;
    if (now - this.#lastRecvAt > DEAD_AFTER_HEARTBEATS * hb) {
      this.#silentDeathMs = hb;
      this.#closeNow(`no packet for ${DEAD_AFTER_HEARTBEATS} × heartbeat (${hb} ms)`);
      return;
    }
    if (this.#heartbeatSentAt && now - this.#heartbeatSentAt > (this.#heartbeatAckTimeoutMs ?? hb)) {
      this.#silentDeathMs = hb;
      this.#closeNow('heartbeat not acknowledged');
      return;
    }
    if (!this.#heartbeatSentAt && (now - this.#lastSendAt >= hb || now - this.#lastRecvAt >= hb)) {
      this.#heartbeatGapMs = now - Math.max(this.#lastSendAt, this.#lastRecvAt) || 1;
      this.heartbeat();
    }
    this.#expirePending(now);
  }

  // ---- internals ---------------------------------------------------------------------------------------------

  #takeSeq(): number {
    const seq = this.#nextSeq;
    // Server-initiated packets carry seq 0; ours wrap from 2^32 - 1 back to 1.
    this.#nextSeq = seq >= 0xffff_ffff ? 1 : seq + 1;
    return seq;
  }

  #write(op: number, seq: number, body: object | undefined): void {
    if (!this.#link || !this.isOpen) return;
    this.#lastSendAt = this.#ticker.now;
    this.#link.send(encodePacket(op, seq, body));
  }

  #dispatch(op: number, seq: number, body: any): void {
    switch (op) {
      case OP.HEARTBEAT_ACK: {
        const gapMs = this.#heartbeatGapMs;
        this.#heartbeatSentAt = this.#heartbeatGapMs = 0;
        if (gapMs) this.#handler.onHeartbeatAck?.(this, gapMs);
        return;
      }
      case OP.PUSH:
        this.#handler.onPush(this, body as PushBody);
        return;
      case OP.NOTIFY:
        this.#handler.onNotify(this, body as NotifyBody);
        return;
      case OP.ERROR: {
        const err = (body ?? { ret: 9, errMsg: 'ERROR without body' }) as ErrorBody;
        this.#hasServerError = true;
        // An ERROR answering one of our requests (e.g. a refused AUTH) settles that request.
        if (seq !== 0 && this.#settle(seq, err)) {
          if (err.ret === 1100 || err.ret === 1101) this.#handler.onServerError(this, err);
          return;
        }
        this.#handler.onServerError(this, err);
        return;
      }
      default:
        if (seq !== 0 && this.#settle(seq, body)) return;
        this.#handler.onResponse?.(this, op, seq, body);
    }
  }

  #settle(seq: number, body: unknown): boolean {
    const p = this.#pending?.get(seq);
    if (!p) return false;
    this.#pending!.delete(seq);
    p.resolve(body);
    return true;
  }

  #expirePending(now: number): void {
    if (!this.#pending?.size) return;
    for (const p of this.#pending.values()) {
      if (now >= p.deadline) {
        this.#closeNow('request timed out');
        return;
      }
    }
  }

  #closeNow(reason: string, isFromLink = false): void {
    if (this.#phase === Phase.Closed) return;
    this.#phase = Phase.Closed;
    this.#closeReason = reason;
    this.#ticker.delete(this);
    if (!isFromLink) this.#link?.close();
    this.#link = undefined;
    const err = new WireClosedError(reason);
    const waiter = this.#openWaiter;
    this.#openWaiter = undefined;
    waiter?.reject(err);
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending) for (const p of pending.values()) p.reject(err);
    this.#handler.onClose(this, reason);
  }
}
