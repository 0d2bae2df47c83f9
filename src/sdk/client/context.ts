/**
 * The state one {@link SynchatClient} shares between its parts — session, events, HTTP, the serialized store
 * queue, resolved options — and the parts themselves (outbox, sync engine, transport loop), which reach each other
 * through it. One context per client; nothing here is module-level.
 */
import { RET } from '../../protocol/index.ts';
import { DEFAULT_BACKOFF, type BackoffOptions } from '../backoff.ts';
import type { Emitter } from '../emitter.ts';
import { GatewayDirectory } from '../gateways.ts';
import { HeartbeatTuner, WEB_HEARTBEAT } from '../heartbeat.ts';
import { HttpClient } from '../http.ts';
import { MemoryStore, type ClientStore } from '../store.ts';
import type { ClientEvents, SessionState } from '../types.ts';
import { hasGlobalWebSocket, webSocketConnector } from '../ws-link.ts';
import { createClientEmitter } from './events.ts';
import type { ClientOptions, ResolvedClientOptions } from './options.ts';
import { resolveClientOptions } from './options.ts';
import { Outbox } from './outbox.ts';
import { SyncEngine } from './sync-engine.ts';
import { TransportLoop } from './transport-loop.ts';

/** Codes that mean the server ended this session (PROTOCOL.md: 1100 logged out / ended, 1101 replaced or revoked). */
export const SESSION_ENDED: ReadonlySet<number> = new Set<number>([RET.NOT_LOGGED_IN, RET.SESSION_REPLACED]);

/**
 * Shared state and parts of one client. Store writes go through {@link ClientContext.enqueueStore}, so they never
 * overlap (the {@link ClientStore} contract) and happen in the order they were asked for.
 */
export class ClientContext {
  /** Options with defaults filled in. */
  readonly options: ResolvedClientOptions;
  /** The HTTP side (base URL, current sid); fails over through {@link ClientContext.gateways}. */
  readonly http: HttpClient;
  /** The gateways the client knows and which of them failed recently. */
  readonly gateways: GatewayDirectory;
  /** Where session, sync key and outbox persist. */
  readonly store: ClientStore;
  /** Reconnect and send-retry backoff. */
  readonly backoff: BackoffOptions;
  /** Random source in [0, 1) for jitter. */
  readonly random: () => number;
  /** The adaptive heartbeat period, kept across connections; undefined: the server's period (`heartbeat: false`). */
  readonly heartbeat: HeartbeatTuner | undefined;
  /** The client's typed events. */
  readonly events: Emitter<ClientEvents>;
  /** The session and sync position; undefined before login/restore and after the session ended. */
  session: SessionState | undefined;
  /** Queued messages, retries, failed/resend, persistence of the queue. */
  readonly outbox: Outbox;
  /** Applies sync pages and PUSH exactly once, in order; epoch reset; ACK. */
  readonly sync: SyncEngine;
  /** Gateways, long connection or long-poll, reconnect backoff; the connection state. */
  readonly transport: TransportLoop;

  #storeChain: Promise<void> = Promise.resolve();
  #isSessionDirty = false;
  // Made once, not per call: persistSession runs after every applied page or PUSH.
  readonly #writeSession = (): Promise<void> => {
    this.#isSessionDirty = false;
    return this.session ? this.store.saveSession({ ...this.session }) : Promise.resolve();
  };
  readonly #onStoreError = (err: unknown): void => {
    this.events.emit('error', err instanceof Error ? err : new Error(String(err)));
  };

  constructor(options: ClientOptions) {
    this.options = resolveClientOptions(options);
    this.http = new HttpClient(options.baseUrl, options.fetch);
    this.store = options.store ?? new MemoryStore();
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.random = options.random ?? Math.random;
    this.heartbeat = options.heartbeat === false ? undefined : new HeartbeatTuner(options.heartbeat ?? WEB_HEARTBEAT);
    this.gateways = new GatewayDirectory({
      gateways: options.gateways,
      httpUrls: [options.baseUrl, ...(options.bootstrapUrls ?? [])],
      failedGatewayMs: this.options.failedGatewayMs,
      refreshMs: this.options.gatewayRefreshMs,
      random: this.random,
    });
    this.http.failover = this.gateways;
    this.events = createClientEmitter();
    this.outbox = new Outbox(this);
    this.sync = new SyncEngine(this);
    this.transport = new TransportLoop(this, options.connectors ?? (hasGlobalWebSocket() ? [webSocketConnector()] : []));
  }

  /** Resolves when every store write asked for so far has finished. */
  get storeIdle(): Promise<void> {
    return this.#storeChain;
  }

  /** Runs `op` after every earlier store write; a failure is reported as an `error` event, never thrown. */
  enqueueStore(op: () => Promise<void>): Promise<void> {
    const next = this.#storeChain.then(op).catch(this.#onStoreError);
    this.#storeChain = next;
    return next;
  }

  /** Saves (a copy of) the session soon; calls before that write starts coalesce into it. */
  persistSession(): void {
    if (this.#isSessionDirty) return;
    this.#isSessionDirty = true;
    void this.enqueueStore(this.#writeSession);
  }

  /** The server ended the session: stop, forget the sid (in the store too), then emit `sessionEnded`. */
  async endSession(ret: number, errMsg: string): Promise<void> {
    if (!this.session) return;
    await this.forgetSession(`session ended (${ret})`);
    this.events.emit('sessionEnded', { ret, errMsg });
  }

  /** Stops the transport and forgets the session (memory and store); the outbox stays. */
  async forgetSession(reason = 'logged out'): Promise<void> {
    this.transport.halt(reason);
    this.session = undefined;
    this.http.sid = undefined;
    await this.enqueueStore(() => this.store.saveSession(undefined));
  }
}
