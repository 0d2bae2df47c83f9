/**
 * The long connections of one process, whatever their transport: what they share (API, hub, timer wheel, limits,
 * the flush queue, a decoder) and the registry used for shutdown and stats. See docs/architecture.md
 * "Long connection".
 */
import { FrameDecoder, RET } from '../../protocol/index.ts';
import type { ChatApi, Logger } from '../../service/index.ts';
import type { Hub } from '../hub.ts';
import type { TimerWheel } from '../timer-wheel.ts';
import { EdgeStats } from '../edge-stats.ts';
import { GOING_AWAY_ERRMSG } from '../drain.ts';
import { Connection, type ConnectionContext, type ConnectionLimits, type Link } from './connection.ts';

/** Totals over the open connections. */
export interface ConnectionStats {
  /** Connections whose link is open. */
  count: number;
  /** Of them, authenticated. */
  authenticated: number;
  /** Outbound bytes held for all of them. */
  bufferedBytes: number;
  /** The largest outbound buffer of one connection now. */
  maxBufferedBytes: number;
  /** The largest outbound buffer of one connection seen after any flush since start. */
  peakBufferedBytes: number;
  /** Authenticated connections by their agreed heartbeat period: `{ [heartbeatMs]: count }` (metrics, the capacity model). */
  byHeartbeatMs: Record<number, number>;
  /** Open connections by transport (`tcp`, `ws`). */
  byTransport: Record<string, number>;
}

/** The registry and shared context of this process's long connections. */
export class Connections implements ConnectionContext {
  readonly api: ChatApi;
  readonly hub: Hub;
  readonly wheel: TimerWheel;
  readonly limits: ConnectionLimits;
  readonly logger: Logger;
  readonly edgeStats: EdgeStats;
  #sharedDecoder: FrameDecoder;
  readonly #all = new Set<Connection>();
  #flushQueue: Connection[] = [];
  #peakBufferedBytes = 0;
  #isDraining = false;
  readonly #flushAll = (): void => this.#flush();

  /** `edgeStats`: this process's answer and delivery counts, shared with the HTTP edge. @default a fresh one */
  constructor(opts: { api: ChatApi; hub: Hub; wheel: TimerWheel; limits: ConnectionLimits; logger: Logger; edgeStats?: EdgeStats }) {
    this.api = opts.api;
    this.hub = opts.hub;
    this.wheel = opts.wheel;
    this.limits = opts.limits;
    this.logger = opts.logger;
    this.edgeStats = opts.edgeStats ?? new EdgeStats();
    this.#sharedDecoder = new FrameDecoder(opts.limits.maxPacketBytes);
  }

  /** Connections whose link is open. */
  get size(): number {
    return this.#all.size;
  }

  /** A new connection over `link`; the transport feeds it bytes and link events. */
  open(link: Link, transport: string): Connection {
    const conn = new Connection(this, link, transport);
    this.#all.add(conn);
    // Draining: the listeners are closed, but a `/ws` upgrade can still come on a kept-alive HTTP socket.
    if (this.#isDraining) conn.fail(RET.GOING_AWAY, GOING_AWAY_ERRMSG);
    return conn;
  }

  /**
   * Starts draining (docs/operations.md "Draining and rolling restarts"): a connection opened from now on gets
   * ERROR 1102 at once. Returns, for every connection open now, the action that sends it ERROR 1102 and closes it;
   * the gateway spreads them over its drain window.
   */
  drain(): (() => void)[] {
    this.#isDraining = true;
    return [...this.#all].map((c) => () => c.fail(RET.GOING_AWAY, GOING_AWAY_ERRMSG));
  }

  get sharedDecoder(): FrameDecoder {
    return this.#sharedDecoder;
  }

  replaceSharedDecoder(): void {
    this.#sharedDecoder = new FrameDecoder(this.limits.maxPacketBytes);
  }

  queueFlush(conn: Connection): void {
    // One setImmediate for every connection with output this turn: packets produced while handling a batch of
    // reads and events leave in one write per connection.
    if (this.#flushQueue.length === 0) setImmediate(this.#flushAll);
    this.#flushQueue.push(conn);
  }

  forget(conn: Connection): void {
    this.#all.delete(conn);
  }

  /** Totals (metrics, tests, the memory benchmark). */
  stats(): ConnectionStats {
    const s: ConnectionStats = { count: 0, authenticated: 0, bufferedBytes: 0, maxBufferedBytes: 0, peakBufferedBytes: this.#peakBufferedBytes, byHeartbeatMs: {}, byTransport: {} };
    for (const c of this.#all) {
      const b = c.bufferedBytes;
      s.count++;
      s.byTransport[c.transport] = (s.byTransport[c.transport] ?? 0) + 1;
      if (c.isOpen) {
        s.authenticated++;
        s.byHeartbeatMs[c.heartbeatMs] = (s.byHeartbeatMs[c.heartbeatMs] ?? 0) + 1;
      }
      s.bufferedBytes += b;
      if (b > s.maxBufferedBytes) s.maxBufferedBytes = b;
    }
    return s;
  }

  /** The authenticated connections of user `uin` (tests; a future admin's "disconnect this user"). */
  connectionsOf(uin: number): Connection[] {
    return [...this.#all].filter((c) => c.isOpen && c.uin === uin);
  }

  /** One row per connection (tests). */
  list(): ReturnType<Connection['info']>[] {
    return [...this.#all].map((c) => c.info());
  }

  /** Drops every connection at once (shutdown): clients reconnect and resync from their key. */
  destroyAll(): void {
    for (const c of [...this.#all]) c.destroy();
  }

  #flush(): void {
    const queue = this.#flushQueue;
    this.#flushQueue = [];
    for (const c of queue) {
      c.flush();
      const b = c.bufferedBytes;
      if (b > this.#peakBufferedBytes) this.#peakBufferedBytes = b;
    }
  }
}
