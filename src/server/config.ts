/**
 * Server configuration: one Config type, one DEFAULTS object (units in names and comments), and loadConfig(env)
 * which reads `SYNCHAT_*`, validates with Ajv, and rejects unknown SYNCHAT_ keys. buildServer never reads
 * process.env; only main.ts does.
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { foldUsername } from '../core/rules.ts';
import { compileTrustProxy } from '../transports/client-address.ts';
import { parseAllowedOrigins } from '../transports/ws/ws-transport.ts';

/** Every setting of a Synchat server. */
export interface Config {
  /** HTTP (API, long-poll, WebSocket `/ws`, web app) port; 0 = ephemeral. */
  httpPort: number;
  /** Raw TCP long-connection port; 0 = ephemeral. */
  tcpPort: number;
  /** Listen address. */
  host: string;
  /** Where the embedded database (and later media) live. */
  dataDir: string;
  /** `on`: throttle sends per user; `off` for load tests on loopback. Failed logins are always throttled. */
  rateLimit: 'on' | 'off';
  /** Connection-holding gateway processes; 0 = everything in one process. */
  workers: number;
  /** SQLite `synchronous`: FULL survives power loss; NORMAL only a process crash. */
  sqliteSynchronous: 'FULL' | 'NORMAL' | 'OFF';
  /** Gather concurrent writes into one transaction (`off` only to measure its worth). */
  groupCommit: 'on' | 'off';
  /** scrypt cost, log2(N) (r = 8, p = 1). Stored hashes of a lower cost are replaced at their next login. */
  passwordLog2N: number;
  /** A device session unused for longer than this many days ends (1100) and leaves the device list. */
  sessionIdleDays: number;
  /** Heartbeat period agreed with a long connection whose AUTH proposes none, in ms; heartbeatMinMs ≤ it ≤ heartbeatMaxMs. */
  heartbeatMs: number;
  /** Shortest heartbeat period an AUTH may agree (a shorter proposal is raised to it), in ms. */
  heartbeatMinMs: number;
  /** Longest heartbeat period an AUTH may agree (a longer proposal is lowered to it), in ms. */
  heartbeatMaxMs: number;
  /** Largest long-connection packet, header included, in bytes. */
  maxPacketBytes: number;
  /** A long connection that has not sent AUTH within this many ms is closed. */
  authTimeoutMs: number;
  /** Outbound bytes buffered for one long connection past which the server stops pushing to it (it gets one NOTIFY when it drains). */
  outboundBufferBytes: number;
  /** Outbound bytes buffered for one long connection past which it is closed; at least outboundBufferBytes + maxPacketBytes. */
  outboundHardBytes: number;
  /** A long connection whose outbound buffer stays above outboundBufferBytes this many ms is closed. */
  outboundStallMs: number;
  /** Largest JSON request body, in bytes. */
  bodyLimitBytes: number;
  /** Largest media file, in bytes. */
  mediaMaxFileBytes: number;
  /** Media bytes one user may upload per rolling 24 hours (instant, de-duplicated uploads are free). */
  mediaMaxDailyBytes: number;
  /** A media upload untouched this long is removed with its chunks, in ms. */
  mediaUploadExpiryMs: number;
  /** A QR login's uuid can be scanned, confirmed and collected for this many ms after it was asked for (at most 5 min). */
  qrLoginExpiryMs: number;
  /** The built web client served at `/` (absolute path); '' serves none. @default <repo>/web/dist */
  webRoot: string;
  /** pino level. */
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** PostgreSQL URL: the store of several nodes (README "Several nodes"); '' = the embedded SQLite file. */
  postgresUrl: string;
  /** Redis URL: news, ended sessions, throttles and the node directory between nodes; '' = one node. */
  redisUrl: string;
  /** Media blobs: one folder every node shares. @default <dataDir>/media */
  mediaDir: string;
  /** PEM certificate (chain) file: with tlsKey, HTTPS + WSS on the HTTP port and TLS on the TCP port (docs/deploy.md); '' = plain. */
  tlsCert: string;
  /** PEM private key file of tlsCert; set both or neither. */
  tlsKey: string;
  /**
   * Comma list of addresses or CIDRs (or `loopback`, `linklocal`, `uniquelocal`) of TLS-terminating proxies: a
   * request from one of them is taken to come from the address in its `X-Forwarded-For`; '' = trust none.
   */
  trustProxy: string;
  /** Comma list of browser origins (`https://chat.example.com`) allowed to open `/ws`; '' = the server's own (Origin's host = Host). */
  allowedOrigins: string;
  /** Open connections (HTTP sockets, `/ws`, TCP) one peer address may hold in one gateway process (IPv6: one /64). */
  maxConnsPerIp: number;
  /** Open connections of one gateway process, all addresses together. */
  maxConns: number;
  /** An HTTP request whose headers have not arrived within this many ms of its first byte gets 408 and is closed. */
  httpHeadersTimeoutMs: number;
  /** An HTTP request not wholly received (body included) within this many ms gets 408 and is closed; the answer's wait is not counted. */
  httpRequestTimeoutMs: number;
  /**
   * Bearer token, compared in constant time, that lets callers off loopback read `/metrics` (docs/security.md
   * "Operator routes") and any caller the admin dashboard's data (`/admin`, no loopback exception: "Admin
   * dashboard"); '' = `/metrics` for loopback callers only, the dashboard for `adminUsers` only.
   */
  adminToken: string;
  /**
   * Comma list of usernames whose logged-in sessions may read the admin dashboard (`/admin`, docs/operations.md
   * "Dashboard") as the admin token does; '' = none (docs/security.md "Admin dashboard").
   */
  adminUsers: string;
  /**
   * SIGTERM drain (docs/operations.md "Draining and rolling restarts"): the process stops accepting, spreads ERROR
   * 1102 over its long connections and ret 1102 over its parked long-polls across the first 80 % of this window,
   * lets the writes in flight finish, and exits within it, in ms. A rolling restart drains each gateway the same way.
   */
  drainMs: number;
  /**
   * The base URL clients reach this node's HTTP port at (`https://chat.example.com`, maybe through a proxy): the
   * directory (`/api/gateways`) lists it and its `ws(s)://…/ws`; '' = built from the listen address (a wildcard
   * address: from the request's Host).
   */
  publicUrl: string;
  /** The URL clients reach this node's TCP long connection at (`tls://chat.example.com:8081`); '' = the public URL's host with the TCP port. */
  publicTcpUrl: string;
}

/** Defaults. */
export const DEFAULTS: Config = {
  httpPort: 8080,
  tcpPort: 8081,
  host: '127.0.0.1',
  dataDir: './data',
  rateLimit: 'on',
  workers: availableParallelism(),
  sqliteSynchronous: 'FULL',
  groupCommit: 'on',
  // OWASP's password storage cheat sheet: scrypt N = 2^17, r = 8, p = 1. 128 MiB and 440-550 ms a hash on the 2-core
  // machine of BENCHMARKS.md "Issue 11" (2^14: 43-47 ms): ~2.3 logins per core-second, one hash at a time on 2 cores
  // (passwords.ts MAX_CONCURRENT_HASHES), far above the logins of 30-day sessions (1M users ≈ 55k logins a day).
  passwordLog2N: 17,
  sessionIdleDays: 30, // 30 days without a call, attach or ack
  heartbeatMs: 30_000, // 30 s; idle close after 2.5 × the agreed period
  // The seed's two clients: the web one heartbeats every ≈ 27 s, the Android one every ≈ 5 min. 20 s keeps a
  // client from costing more than a web one; 5 min is the longest a mobile network's NAT is commonly trusted with.
  heartbeatMinMs: 20_000, // 20 s
  heartbeatMaxMs: 300_000, // 5 min
  maxPacketBytes: 1024 * 1024, // 1 MiB
  authTimeoutMs: 10_000, // 10 s (PROTOCOL.md "Binary long connection")
  outboundBufferBytes: 256 * 1024, // 256 KiB: stop pushing past it
  outboundHardBytes: 4 * 1024 * 1024, // 4 MiB: close past it
  outboundStallMs: 60_000, // 60 s above outboundBufferBytes: close
  bodyLimitBytes: 64 * 1024, // 64 KiB
  mediaMaxFileBytes: 100 * 1024 * 1024, // 100 MiB
  mediaMaxDailyBytes: 2 * 1024 * 1024 * 1024, // 2 GiB per user per 24 h
  mediaUploadExpiryMs: 24 * 60 * 60_000, // 24 h
  // 2 min: time to take out a phone and scan; the login screen shows a new code when one expires. Short, because the
  // code on a screen is a login anyone who photographs it may confirm for a victim (docs/security.md "QR login").
  qrLoginExpiryMs: 120_000,
  webRoot: fileURLToPath(new URL('../../web/dist', import.meta.url)), // built by `npm run build:web`
  logLevel: 'info',
  postgresUrl: '',
  redisUrl: '',
  mediaDir: '', // '' = <dataDir>/media
  tlsCert: '', // '' = no TLS (or TLS ends at a proxy in front)
  tlsKey: '',
  trustProxy: '', // '' = X-Forwarded-For is never believed
  allowedOrigins: '', // '' = same origin only (the web app served here)
  // Carrier-grade NAT and office networks put many users behind one IPv4 address, each holding a long connection
  // and a few HTTP sockets (a browser opens up to 6): 1,000 lets a few hundred of them in while one address still
  // cannot take more than 1/16 of a process. A proxy in trustProxy carries many clients: it is held to maxConns only.
  maxConnsPerIp: 1000,
  // One process may hold 20,000 files here (ulimit -n): 16,000 sockets leave 4,000 for the database, media files,
  // Redis and pipes. Raise both together.
  maxConns: 16_000,
  httpHeadersTimeoutMs: 10_000, // 10 s: a header line every 5 s was held 80 s
  // 30 s for a whole request body: the SDK's 1 MiB media chunk at 280 kbit/s (slower links choose smaller chunks).
  httpRequestTimeoutMs: 30_000,
  adminToken: '', // '' = /metrics answers loopback callers only; /admin only adminUsers
  adminUsers: '', // '' = no user is an admin
  // 10 s (PROTOCOL.md "Several nodes"): 8 s of spread at the default 30 s heartbeat is ~4 reconnects a second per
  // 32 connections; Kubernetes' default terminationGracePeriodSeconds (30 s) leaves room above it.
  drainMs: 10_000,
  publicUrl: '', // '' = from the listen address (docs/deploy.md "Public addresses")
  publicTcpUrl: '', // '' = the public URL's host and SYNCHAT_TCP_PORT
};

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    httpPort: { type: 'integer', minimum: 0, maximum: 65535 },
    tcpPort: { type: 'integer', minimum: 0, maximum: 65535 },
    host: { type: 'string', minLength: 1 },
    dataDir: { type: 'string', minLength: 1 },
    rateLimit: { enum: ['on', 'off'] },
    workers: { type: 'integer', minimum: 0, maximum: 64 },
    sqliteSynchronous: { enum: ['FULL', 'NORMAL', 'OFF'] },
    groupCommit: { enum: ['on', 'off'] },
    passwordLog2N: { type: 'integer', minimum: 10, maximum: 20 },
    sessionIdleDays: { type: 'integer', minimum: 1, maximum: 3650 },
    heartbeatMs: { type: 'integer', minimum: 1000, maximum: 600_000 },
    heartbeatMinMs: { type: 'integer', minimum: 1000, maximum: 600_000 },
    heartbeatMaxMs: { type: 'integer', minimum: 1000, maximum: 600_000 },
    maxPacketBytes: { type: 'integer', minimum: 1024, maximum: 64 * 1024 * 1024 },
    authTimeoutMs: { type: 'integer', minimum: 100, maximum: 600_000 },
    outboundBufferBytes: { type: 'integer', minimum: 1024, maximum: 1024 * 1024 * 1024 },
    outboundHardBytes: { type: 'integer', minimum: 2048, maximum: 4 * 1024 * 1024 * 1024 },
    outboundStallMs: { type: 'integer', minimum: 100, maximum: 3_600_000 },
    bodyLimitBytes: { type: 'integer', minimum: 1024, maximum: 16 * 1024 * 1024 },
    mediaMaxFileBytes: { type: 'integer', minimum: 1, maximum: 1024 * 1024 * 1024 * 1024 },
    mediaMaxDailyBytes: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
    mediaUploadExpiryMs: { type: 'integer', minimum: 100, maximum: 365 * 24 * 60 * 60_000 },
    qrLoginExpiryMs: { type: 'integer', minimum: 1000, maximum: 5 * 60_000 },
    webRoot: { type: 'string' },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    postgresUrl: { type: 'string', pattern: '^$|^postgres(ql)?://' },
    redisUrl: { type: 'string', pattern: '^$|^rediss?://' },
    mediaDir: { type: 'string' },
    tlsCert: { type: 'string' },
    tlsKey: { type: 'string' },
    trustProxy: { type: 'string' },
    allowedOrigins: { type: 'string' },
    maxConnsPerIp: { type: 'integer', minimum: 1, maximum: 10_000_000 },
    maxConns: { type: 'integer', minimum: 1, maximum: 10_000_000 },
    httpHeadersTimeoutMs: { type: 'integer', minimum: 1000, maximum: 600_000 },
    httpRequestTimeoutMs: { type: 'integer', minimum: 1000, maximum: 3_600_000 },
    // Guessable tokens are refused: 16 characters is ~96 bits from `openssl rand -base64 12`.
    adminToken: { type: 'string', pattern: '^$|^\\S{16,}$' },
    // Usernames as registered (PROTOCOL.md "Model"), compared case-folded.
    adminUsers: { type: 'string', pattern: '^$|^\\s*[A-Za-z0-9_]{3,32}\\s*(,\\s*[A-Za-z0-9_]{3,32}\\s*)*$' },
    drainMs: { type: 'integer', minimum: 100, maximum: 3_600_000 },
    publicUrl: { type: 'string', pattern: '^$|^https?://[^/?#\\s]+(/[^?#\\s]*)?$' },
    publicTcpUrl: { type: 'string', pattern: '^$|^(tcp|tls)://[^/?#\\s]+:[0-9]+$' },
  },
} as const;

const validate = new Ajv({ coerceTypes: true, allErrors: false }).compile(SCHEMA);

/** `SYNCHAT_HTTP_PORT` ↔ `httpPort`. */
export function envName(key: keyof Config): string {
  return 'SYNCHAT_' + key.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase().replace('LOG2_N', 'LOG2N');
}

/** `SYNCHAT_ADMIN_USERS` as a set of usernames, case-folded as stored (PROTOCOL.md "Model"). */
export function adminUsernames(list: string): Set<string> {
  return new Set(list.split(',').map((name) => foldUsername(name.trim())).filter((name) => name !== ''));
}

/** A configuration error naming the variable. */
export class ConfigError extends Error {}

/** Reads `SYNCHAT_*` from env over DEFAULTS (and `overrides` over both). Throws ConfigError naming the variable. */
export function loadConfig(env: Record<string, string | undefined>, overrides: Partial<Config> = {}): Config {
  const byEnv = new Map((Object.keys(DEFAULTS) as (keyof Config)[]).map((k) => [envName(k), k]));
  const raw: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('SYNCHAT_') || value === undefined) continue;
    const key = byEnv.get(name);
    if (!key) throw new ConfigError(`${name} is not a Synchat setting (known: ${[...byEnv.keys()].join(', ')})`);
    raw[key] = value;
  }
  const merged: Record<string, unknown> = { ...DEFAULTS, ...raw, ...overrides };
  if (!validate(merged)) {
    const e = validate.errors![0]!;
    const key = e.instancePath.slice(1) as keyof Config;
    throw new ConfigError(`${key ? envName(key) : 'config'} ${e.message ?? 'is invalid'}`);
  }
  const config = merged as unknown as Config;
  // A full-size answer must fit under the hard bound on top of the soft one, or a healthy reader gets closed.
  if (config.outboundHardBytes < config.outboundBufferBytes + config.maxPacketBytes) {
    throw new ConfigError(`${envName('outboundHardBytes')} must be at least SYNCHAT_OUTBOUND_BUFFER_BYTES + SYNCHAT_MAX_PACKET_BYTES`);
  }
  if (config.heartbeatMinMs > config.heartbeatMs || config.heartbeatMs > config.heartbeatMaxMs) {
    throw new ConfigError(`${envName('heartbeatMs')} (${config.heartbeatMs}) must lie within ${envName('heartbeatMinMs')} (${config.heartbeatMinMs}) and ${envName('heartbeatMaxMs')} (${config.heartbeatMaxMs})`);
  }
  if (!config.tlsCert !== !config.tlsKey) {
    const missing = config.tlsCert ? 'tlsKey' : 'tlsCert';
    throw new ConfigError(`${envName(missing)} is missing: set SYNCHAT_TLS_CERT and SYNCHAT_TLS_KEY together, or neither`);
  }
  // Node refuses a header timeout longer than the whole request's.
  if (config.httpHeadersTimeoutMs > config.httpRequestTimeoutMs) {
    throw new ConfigError(`${envName('httpHeadersTimeoutMs')} must not exceed ${envName('httpRequestTimeoutMs')}`);
  }
  try {
    parseAllowedOrigins(config.allowedOrigins);
  } catch (err) {
    throw new ConfigError(`${envName('allowedOrigins')} ${(err as Error).message}`);
  }
  try {
    compileTrustProxy(config.trustProxy);
  } catch (err) {
    throw new ConfigError(`${envName('trustProxy')} ${(err as Error).message} (expected a comma list of addresses or CIDRs)`);
  }
  return config;
}
