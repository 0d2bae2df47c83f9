/**
 * The transport loop: finds a gateway, holds a long connection (the `connectors` in order) or falls back to HTTP
 * long-poll while retrying the long connection in the background, and reconnects with jittered exponential backoff
 * (docs/sdk.md "Gateways", "Fallback", "Reconnect", "Several nodes"). Gateways are picked at random among the live
 * ones of the client's {@link GatewayDirectory}, and one that fails is avoided for a while, so clients spread over
 * the nodes and leave a dead one. It is the {@link WireHandler} of its connections: packets of the current one go
 * to the sync engine.
 */
import { RET, SynchatError, type Ret } from '../../protocol/index.ts';
import { backoffDelay } from '../backoff.ts';
import type { ConnectionState, TransportName } from '../types.ts';
import { WireConnection, type Connector, type ErrorBody, type NotifyBody, type PushBody, type WireHandler } from '../wire.ts';
import { SESSION_ENDED, type ClientContext } from './context.ts';

/**
 * Connection state machine of one client: `connecting` → `online` (on a long connection or on `http`) →
 * `offline` with a retry scheduled, until {@link TransportLoop.halt}. Every async flow carries the run number it
 * started under and quits when `start`/`halt` moved it on.
 */
export class TransportLoop implements WireHandler {
  readonly #ctx: ClientContext;
  readonly #connectors: Connector[];
  #isRunning = false;
  /** Bumped by start/stop: async flows of an older run see a different value and quit. */
  #run = 0;
  #state: ConnectionState = { state: 'offline', reason: 'not started' };
  #wire: WireConnection | undefined;
  /** The gateway URL of `#wire`. */
  #wireUrl: string | undefined;
  #pollAbort: AbortController | undefined;
  /** Bumped whenever long-poll stops; a poll loop of an older value quits. */
  #pollGen = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #longRetryTimer: ReturnType<typeof setTimeout> | undefined;
  #reconnectAttempt = 0;
  #longRetryAttempt = 0;
  #isConnecting = false;
  /** Moving off a gateway that is going away (1102) and not online since: states say `isMoving`. */
  #isMoving = false;

  constructor(ctx: ClientContext, connectors: Connector[]) {
    this.#ctx = ctx;
    this.#connectors = connectors;
  }

  /** The connection state now (the live object: copy it before handing it out). */
  get state(): Readonly<ConnectionState> {
    return this.#state;
  }

  /** True between `start()` and `halt()`. */
  get isRunning(): boolean {
    return this.#isRunning;
  }

  /** The current long connection, authenticated or not. */
  get wire(): WireConnection | undefined {
    return this.#wire;
  }

  /** The current long connection when it is authenticated (requests may go over it), else undefined. */
  get authedWire(): WireConnection | undefined {
    return this.#wire?.isAuthed ? this.#wire : undefined;
  }

  /** Starts a new run and makes its first connection attempt; resolves after it (online, or a retry scheduled). */
  start(): Promise<void> {
    this.#isRunning = true;
    this.#run++;
    this.#reconnectAttempt = 0;
    return this.#connect(this.#run);
  }

  /** Ends the run: stops long-poll and every timer, closes the long connection, goes `offline` with `reason`. */
  halt(reason: string): void {
    this.#isRunning = false;
    this.#run++;
    this.#stopPolling();
    this.#clearLongRetry();
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#dropWire(reason, false);
    this.#setState({ state: 'offline', reason });
  }

  /**
   * The current transport failed: drops it (a long connection's gateway is remembered as failed, so the next
   * connect prefers another node) and connects again after the next backoff delay (one timer at a time).
   *
   * `isGoingAway`: the gateway said it is going away (ERROR or ret 1102, PROTOCOL.md: "reconnect, to another
   * gateway if there is one"). That is no failure of this client, so the backoff does not grow: it connects again at
   * once when another live gateway is left, else (one server restarting) after the first backoff delay, so a gateway
   * that keeps answering 1102 is not asked in a tight loop.
   */
  scheduleReconnect(reason: string, isGoingAway = false): void {
    if (!this.#isRunning) return;
    this.#stopPolling();
    this.#clearLongRetry();
    this.#dropWire(reason, true);
    if (this.#reconnectTimer) return;
    const { backoff, random } = this.#ctx;
    let delay: number;
    if (isGoingAway) delay = this.#hasLiveGateway() ? 0 : backoffDelay(0, backoff, random);
    else delay = backoffDelay(this.#reconnectAttempt++, backoff, random);
    this.#isMoving = isGoingAway;
    this.#setState({ state: 'offline', reason, retryInMs: delay });
    const run = this.#run;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      void this.#connect(run);
    }, delay);
  }

  // ---- WireHandler (server packets on the current connection) ----------------------------------------------

  /** @internal */
  onPush(conn: WireConnection, body: PushBody): void {
    if (conn !== this.#wire || !this.#ctx.session) return;
    this.#ctx.sync.onPush(conn, body);
  }

  /** @internal */
  onNotify(conn: WireConnection, body: NotifyBody): void {
    if (conn !== this.#wire || !this.#ctx.session) return;
    this.#ctx.sync.onNotify(body);
  }

  /** @internal */
  onServerError(conn: WireConnection, body: ErrorBody): void {
    if (conn !== this.#wire) return;
    if (SESSION_ENDED.has(body.ret)) void this.#ctx.endSession(body.ret, body.errMsg);
    // PROTOCOL.md: ERROR 1102, the node is draining: reconnect, to another gateway if there is one.
    else if (body.ret === RET.GOING_AWAY) this.scheduleReconnect(`gateway going away: ${body.errMsg}`, true);
    else this.#ctx.events.emit('error', new SynchatError(body.ret as Ret, body.errMsg));
  }

  /** @internal */
  onHeartbeatAck(conn: WireConnection, gapMs: number): void {
    const tuner = this.#ctx.heartbeat;
    if (conn !== this.#wire || !tuner) return;
    conn.heartbeatIntervalMs = tuner.survived(gapMs);
  }

  /** @internal */
  onClose(conn: WireConnection, reason: string): void {
    if (conn !== this.#wire) return;
    if (conn.silentDeathMs) this.#ctx.heartbeat?.diedSilently(conn.silentDeathMs);
    this.#dropWire(reason, true);
    if (!this.#isRunning) return;
    this.scheduleReconnect(`connection lost: ${reason}`);
  }

  // ---- connecting -------------------------------------------------------------------------------------------

  /** Closes the current long connection, if any; `isFailed`: its gateway failed (the directory remembers). */
  #dropWire(reason: string, isFailed: boolean): void {
    const wire = this.#wire;
    const url = this.#wireUrl;
    this.#wire = this.#wireUrl = undefined;
    if (wire && url && isFailed) this.#ctx.gateways.markFailed(url);
    wire?.close(reason);
  }

  /** True when a gateway not marked failed is left: for a long-connection transport of ours, or for HTTP. */
  #hasLiveGateway(): boolean {
    const gateways = this.#ctx.gateways;
    return this.#connectors.some((c) => gateways.pick(c.transport) !== undefined) || gateways.pick('http') !== undefined;
  }

  #setState(next: ConnectionState): void {
    if (next.state === 'online') this.#isMoving = false;
    else if (this.#isMoving) next = { ...next, isMoving: true };
    const s = this.#state;
    if (s.state === next.state && s.transport === next.transport && s.url === next.url && s.reason === next.reason && s.retryInMs === next.retryInMs && s.isMoving === next.isMoving) return;
    this.#state = next;
    this.#ctx.events.emit('connection', { ...next });
  }

  async #connect(run: number): Promise<void> {
    if (run !== this.#run || this.#isConnecting) return;
    this.#isConnecting = true;
    try {
      this.#setState({ state: 'connecting' });
      await this.#refreshGateways();
      if (run !== this.#run) return;
      if (await this.#tryLongConnection(run)) return;
      if (run !== this.#run) return;
      // The long connection cannot be made: long-poll, if HTTP answers at all.
      const reason = await this.#tryLongPoll(run);
      if (reason === undefined || run !== this.#run) return;
      this.scheduleReconnect(reason);
    } finally {
      this.#isConnecting = false;
    }
  }

  /** Asks `GET /api/gateways` when the list is stale (never asked, old, or a gateway failed since). */
  async #refreshGateways(): Promise<void> {
    const directory = this.#ctx.gateways;
    if (!directory.needsRefresh) return;
    try {
      const r = await this.#ctx.http.call('/api/gateways', {});
      if (r?.ret === 0) directory.replace(r.gateways);
    } catch {
      // No HTTP base URL answered: keep the list we know, its long connections may still work.
    }
  }

  /**
   * Tries each connector on its gateways (live ones in random order; see {@link GatewayDirectory.candidates});
   * true when one authenticated and the client is online on it.
   */
  async #tryLongConnection(run: number, isBackground = false): Promise<boolean> {
    const ctx = this.#ctx;
    for (const connector of this.#connectors) {
      for (const url of ctx.gateways.candidates(connector.transport)) {
        if (run !== this.#run || !ctx.session) return false;
        if (!isBackground) this.#setState({ state: 'connecting', transport: connector.transport, url });
        const conn = new WireConnection(this, ctx.options.wire);
        try {
          await conn.open(connector.connect, url);
          const ok = await conn.auth(ctx.session.sid, ctx.session.syncKey, ctx.heartbeat?.proposalMs);
          if (run !== this.#run || !ctx.session) {
            conn.close('stopped');
            return false;
          }
          if (ok.ret !== 0) {
            conn.close(`AUTH refused: ${ok.errMsg}`);
            if (SESSION_ENDED.has(ok.ret)) {
              await ctx.endSession(ok.ret, ok.errMsg ?? '');
              return true;
            }
            if (ok.ret === RET.GOING_AWAY || ok.ret === RET.SERVER_ERROR) ctx.gateways.markFailed(url);
            // ret 1: our key is ahead of the log (restored from a backup): start over from key 0.
            if (ok.ret === RET.BAD_REQUEST && ctx.session.syncKey > 0) ctx.sync.resetLog((ok as { epoch?: string }).epoch ?? '');
            continue;
          }
          ctx.gateways.markWorking(url);
          if (ctx.heartbeat) conn.heartbeatIntervalMs = ctx.heartbeat.agreed(ok.heartbeatMs);
          this.#goOnlineOnWire(conn, connector.transport, url, ok.epoch);
          return true;
        } catch {
          conn.close('connect failed');
          ctx.gateways.markFailed(url);
        }
      }
    }
    return false;
  }

  #goOnlineOnWire(conn: WireConnection, transport: TransportName, url: string, epoch: string): void {
    this.#stopPolling();
    this.#clearLongRetry();
    const ctx = this.#ctx;
    if (ctx.session!.epoch !== epoch) ctx.sync.resetLog(epoch);
    this.#wire = conn;
    this.#wireUrl = url;
    this.#reconnectAttempt = 0;
    this.#longRetryAttempt = 0;
    this.#setState({ state: 'online', transport, url });
    // Always sync once after (re)connecting: it also re-aligns the server's view of our key on this connection.
    ctx.sync.request();
    void ctx.outbox.flush();
  }

  /** Starts long-poll if HTTP answers; returns undefined when online on HTTP, else the failure reason. */
  async #tryLongPoll(run: number): Promise<string | undefined> {
    const ctx = this.#ctx;
    const session = ctx.session;
    if (!session) return 'no session';
    // Spread long-polling clients over the nodes too; a failed request moves on by itself (HttpClient failover).
    const url = ctx.gateways.pick('http');
    if (url) ctx.http.baseUrl = url;
    this.#setState({ state: 'connecting', transport: 'http', url: ctx.http.baseUrl });
    let r: any;
    try {
      // A zero-hold synccheck: proves the server answers, checks the session and epoch, and acknowledges our key.
      r = await ctx.http.synccheck(session.syncKey, 0);
    } catch (err) {
      return `server unreachable: ${(err as Error).message}`;
    }
    if (run !== this.#run || !ctx.session) return undefined;
    if (r?.ret !== 0) {
      if (SESSION_ENDED.has(r?.ret)) {
        await ctx.endSession(r.ret, r.errMsg);
        return undefined;
      }
      if (r?.ret === RET.BAD_REQUEST && typeof r.epoch === 'string') ctx.sync.resetLog(r.epoch);
      return `synccheck refused: ${r?.errMsg ?? 'bad answer'}`;
    }
    if (typeof r.epoch === 'string' && r.epoch !== ctx.session.epoch) ctx.sync.resetLog(r.epoch);
    this.#reconnectAttempt = 0;
    this.#setState({ state: 'online', transport: 'http', url: ctx.http.baseUrl });
    ctx.sync.request();
    void ctx.outbox.flush();
    void this.#pollLoop(run, ++this.#pollGen);
    this.#scheduleLongRetry(run);
    return undefined;
  }

  async #pollLoop(run: number, gen: number): Promise<void> {
    const ctx = this.#ctx;
    while (run === this.#run && gen === this.#pollGen && ctx.session && !this.#wire) {
      const ac = new AbortController();
      this.#pollAbort = ac;
      let r: any;
      try {
        r = await ctx.http.synccheck(ctx.session.syncKey, ctx.options.synccheckTimeoutMs, ac.signal);
      } catch (err) {
        if (ac.signal.aborted || run !== this.#run) return;
        this.scheduleReconnect(`long-poll failed: ${(err as Error).message}`);
        return;
      } finally {
        if (this.#pollAbort === ac) this.#pollAbort = undefined;
      }
      if (run !== this.#run || gen !== this.#pollGen || !ctx.session || this.#wire) return;
      if (r?.ret !== 0) {
        if (SESSION_ENDED.has(r?.ret)) return void (await ctx.endSession(r.ret, r.errMsg));
        if (r?.ret === RET.BAD_REQUEST && typeof r.epoch === 'string') {
          ctx.sync.resetLog(r.epoch);
          continue;
        }
        // ret 1102 here: every HTTP base URL tried for this poll is going away (HttpClient moved on already).
        this.scheduleReconnect(`synccheck failed: ${r?.errMsg ?? 'bad answer'}`, r?.ret === RET.GOING_AWAY);
        return;
      }
      if (typeof r.epoch === 'string' && r.epoch !== ctx.session.epoch) ctx.sync.resetLog(r.epoch);
      // The synccheck may have moved to another node (failover): say where the client long-polls now.
      if (this.#state.url !== ctx.http.baseUrl) this.#setState({ state: 'online', transport: 'http', url: ctx.http.baseUrl });
      if (r.selector > 0 || r.syncKey > ctx.session.syncKey) await ctx.sync.syncNow();
    }
  }

  #stopPolling(): void {
    this.#pollGen++;
    this.#pollAbort?.abort();
    this.#pollAbort = undefined;
  }

  /** While on long-poll: try the long connection again later, with growing jittered delays. */
  #scheduleLongRetry(run: number): void {
    if (this.#connectors.length === 0 || this.#longRetryTimer) return;
    const { backoff, options } = this.#ctx;
    const delay = backoffDelay(this.#longRetryAttempt++, { baseMs: options.longConnectionRetryMs, maxMs: Math.max(backoff.maxMs, options.longConnectionRetryMs) }, this.#ctx.random);
    this.#longRetryTimer = setTimeout(async () => {
      this.#longRetryTimer = undefined;
      if (run !== this.#run || this.#wire || this.#isConnecting) return;
      await this.#refreshGateways();
      if (run !== this.#run || this.#wire) return;
      this.#isConnecting = true;
      try {
        if (await this.#tryLongConnection(run, true)) return;
      } finally {
        this.#isConnecting = false;
      }
      if (run !== this.#run || this.#wire) return;
      // Still no long connection: stay on long-poll and try again later.
      if (this.#state.state === 'online' && this.#state.transport === 'http') this.#scheduleLongRetry(run);
      // Long-poll failed meanwhile and its reconnect, finding this attempt under way, gave way (#connect runs one
      // at a time): connect now, or the client stays offline for good (found by npm run chaos).
      else if (!this.#reconnectTimer) void this.#connect(run);
    }, delay);
  }

  #clearLongRetry(): void {
    if (this.#longRetryTimer) clearTimeout(this.#longRetryTimer);
    this.#longRetryTimer = undefined;
  }
}
