/**
 * Options of {@link SynchatClient} and their defaults (see docs/sdk.md). The client's parts read the resolved form
 * ({@link ResolvedClientOptions}) through their {@link ClientContext}.
 */
import type { BackoffOptions } from '../backoff.ts';
import type { HeartbeatPolicy } from '../heartbeat.ts';
import type { FetchLike } from '../http.ts';
import type { ClientStore } from '../store.ts';
import type { Gateway } from '../types.ts';
import type { Connector, WireOptions } from '../wire.ts';

/** Options of {@link SynchatClient}. */
export interface ClientOptions {
  /**
   * Base URL of the HTTP API, e.g. `http://127.0.0.1:8080` (no trailing `/api`): where the client starts. When it
   * fails, requests move to another HTTP base URL (`bootstrapUrls`, the `http` gateways); `client.baseUrl` says
   * where they go now.
   */
  baseUrl: string;
  /**
   * Other nodes' HTTP base URLs, for when `baseUrl` does not answer (before the client has learnt the directory,
   * e.g. at the first start). @default []
   */
  bootstrapUrls?: string[];
  /** Where session, sync key and outbox live. @default new MemoryStore() */
  store?: ClientStore;
  /**
   * Long-connection transports in order of preference. @default `[webSocketConnector()]` when a global
   * WebSocket exists, else `[]` (HTTP long-poll only). In Node use `nodeConnectors()` from src/sdk/node (TCP
   * first, then WebSocket through the `ws` package).
   */
  connectors?: Connector[];
  /**
   * Use these gateways instead of asking `GET /api/gateways` (e.g. the web app: its own origin only). The client
   * spreads and fails over among them as among a directory's; `http` entries are base URLs for API calls.
   */
  gateways?: Gateway[];
  /** How long a gateway that failed (connect error, close, timeout, ret 1102) is avoided, in ms. @default 30000 */
  failedGatewayMs?: number;
  /** Age after which `GET /api/gateways` is asked again at the next connect, in ms (also asked after any failure). @default 60000 */
  gatewayRefreshMs?: number;
  /** `fetch` to use. @default globalThis.fetch */
  fetch?: FetchLike;
  /** Reconnect backoff. @default { baseMs: 500, maxMs: 30000 } */
  backoff?: Partial<BackoffOptions>;
  /** While on long-poll, first delay before trying the long connection again, in ms (doubles, jittered, up to backoff.maxMs). @default 5000 */
  longConnectionRetryMs?: number;
  /** synccheck hold, in ms. @default 25000 */
  synccheckTimeoutMs?: number;
  /** Entries per sync page. @default 200 */
  syncLimit?: number;
  /** Automatic send attempts of one outbox item before it turns `failed`. @default 5 */
  maxSendAttempts?: number;
  /** Options of each long connection (timeouts, ticker). */
  wire?: WireOptions;
  /**
   * Heartbeat of the long connection (docs/sdk.md "Heartbeat"): `WEB_HEARTBEAT` (27 s, fixed, as the seed's web
   * client), `MOBILE_HEARTBEAT` (adaptive, 1 min growing to 5 min, stepping back after a silent death) or a
   * {@link HeartbeatPolicy} of one's own. AUTH proposes its `maxMs`; the server's agreed period bounds it.
   * `false`: propose nothing and heartbeat at the server's `heartbeatMs`. @default WEB_HEARTBEAT
   */
  heartbeat?: HeartbeatPolicy | false;
  /** Random source in [0, 1) for jitter (tests). @default Math.random */
  random?: () => number;
  /**
   * Where a device with no stored position starts: `true` syncs its whole log from key 0 (contacts, groups and
   * history, paged), as a chat app wants; `false` starts at the server's head (load tools, bots). @default true
   */
  isHistoryFromStart?: boolean;
}

/** {@link ClientOptions} with the numeric defaults filled in. */
export type ResolvedClientOptions = Required<
  Pick<ClientOptions, 'synccheckTimeoutMs' | 'syncLimit' | 'maxSendAttempts' | 'longConnectionRetryMs' | 'failedGatewayMs' | 'gatewayRefreshMs'>
> &
  ClientOptions;

/** Fills in the defaults of {@link ClientOptions}; a field given explicitly (even `undefined`) wins, as a spread does. */
export function resolveClientOptions(options: ClientOptions): ResolvedClientOptions {
  return {
    synccheckTimeoutMs: 25_000,
    syncLimit: 200,
    maxSendAttempts: 5,
    longConnectionRetryMs: 5_000,
    // PROTOCOL.md "Several nodes": a dead node leaves the directory within 30 s.
    failedGatewayMs: 30_000,
    gatewayRefreshMs: 60_000,
    ...options,
  };
}
