/**
 * The HTTP transport: Fastify routes for every call of the API table, long-poll synccheck, and the JSON error
 * edge (every failure is `{ret, errMsg}` with the table's status; unexpected errors are ret 9, logged, never
 * echoed). See docs/protocol.md "HTTP".
 */
import type { Socket } from 'node:net';
import type { TlsOptions } from 'node:tls';
import { randomBytes } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { CALLS, RET, SynchatError, httpStatusOf, type CallPath } from '../../protocol/index.ts';
import { validateCall, type ChatApi, type Reply } from '../../service/index.ts';
import type { TrustProxy } from '../client-address.ts';
import type { ConnectionCaps } from '../conn-caps.ts';
import type { SynccheckHandler } from '../longpoll/synccheck.ts';
import { registerBrowserHeaders } from './browser-headers.ts';
import { registerAdminRoutes, type AdminRoutesOptions } from './admin-routes.ts';
import { registerMediaRoutes, type MediaRoutesOptions } from './media-routes.ts';
import { registerStaticRoutes, type StaticRoutesOptions } from './static-routes.ts';
import { parkSynccheck } from './park-synccheck.ts';
import { registerWebwxRoutes, type WebwxRoutesOptions } from '../webwx/webwx-routes.ts';
import type { EdgeStats } from '../edge-stats.ts';
import { adminRefusal } from './admin-access.ts';

/** Options of the HTTP transport. */
export interface HttpTransportOptions {
  api: ChatApi;
  synccheck: SynccheckHandler;
  /**
   * The process's pino logger (its `redact` keeps sids, passwords and tokens out; build-server.ts makeLogger), or
   * false for none. Each request logs through a child carrying its `reqId`.
   */
  logger: FastifyBaseLogger | false;
  /** Largest JSON body, in bytes. @default 65536 (64 KiB) */
  bodyLimitBytes: number;
  /**
   * Slow clients (docs/protocol.md "Connection limits"): a request whose headers have not all arrived within
   * `headersMs` of its first byte, or which is not wholly received (body included) within `requestMs`, gets 408
   * and its connection is closed. Neither covers the answer: a synccheck parked for 60 s after its request arrived
   * is not cut (measured, Node 20).
   */
  timeouts: { headersMs: number; requestMs: number };
  /** The process's connection caps (shared with the TCP listener): a socket over one gets 429/503 {ret:1205}. */
  caps: ConnectionCaps;
  /** Media routes (chunk PUT, complete, GET with Range); absent: no media routes. */
  media?: Omit<MediaRoutesOptions, 'api'>;
  /** The WeChat-web gateway (docs/webwx.md); absent: no `/jslogin` or `/cgi-bin/mmwebwx-bin/*` routes. */
  webwx?: Omit<WebwxRoutesOptions, 'api' | 'synccheck'>;
  /** The web client (docs/web.md) served at `/`; absent: none. */
  web?: StaticRoutesOptions;
  /** Certificate, key and TLS settings (src/server/tls.ts): serve HTTPS (and WSS on its upgrade event); absent: plain HTTP. */
  tls?: TlsOptions;
  /**
   * Which peers' X-Forwarded-For names the client (`req.ip`); the `/ws` upgrade must be given the same function
   * (src/transports/client-address.ts). @default trust none
   */
  trustProxy?: TrustProxy;
  /** This process's answer counts: every JSON answer is counted by ret (`longpoll` for synccheck, else `http`). */
  edgeStats?: EdgeStats;
  /**
   * `GET /metrics` (docs/operations.md "Metrics"): the node's figures in Prometheus text; absent: no such route. Read
   * by loopback callers and by others with `Authorization: Bearer <adminToken>` ({@link adminRefusal}).
   */
  metrics?: { text(): Promise<string>; adminToken: string };
  /** `GET /api/admin/stats`, the admin dashboard's data (docs/operations.md "Dashboard"); absent: no such route. */
  admin?: Omit<AdminRoutesOptions, 'api'>;
  /**
   * `/readyz` (docs/operations.md "Health and readiness"): ret 0 answers 200, anything else 503 with its body.
   * Absent: `/readyz` answers as `/healthz`.
   */
  ready?: () => Promise<Reply>;
  /**
   * True while this process drains: every answer carries `Connection: close`, so a client's next request opens a
   * new connection, which the kernel hands to a live gateway (the listeners are closed). @default never
   */
  isDraining?: () => boolean;
}

/** Prometheus' text exposition format. */
const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * How often Node looks for requests past their timeouts, in ms. Its default (30 s) let a 10 s header timeout hold
 * a trickling client 40 s; a check walks only the sockets with a request in progress.
 */
const TIMEOUT_CHECK_INTERVAL_MS = 1000;

/** An incoming `X-Request-Id` taken as the request id (a proxy's or a client's): short, and safe in a log line. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;
/** Query parameters whose values are secrets (a QR login's uuid lets its holder take the session). */
const SECRET_QUERY_KEYS: ReadonlySet<string> = new Set(['sid', 'uuid', 'token', 'password']);

/** `url` fit for a log line: the values of {@link SECRET_QUERY_KEYS} replaced by `[Redacted]`. */
export function loggableUrl(url: string): string {
  const at = url.indexOf('?');
  if (at < 0) return url;
  const query = url
    .slice(at + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      let key = eq < 0 ? pair : pair.slice(0, eq);
      try {
        key = decodeURIComponent(key);
      } catch {
        // A malformed escape: compare the key as written.
      }
      return eq >= 0 && SECRET_QUERY_KEYS.has(key.toLowerCase()) ? `${pair.slice(0, eq)}=[Redacted]` : pair;
    })
    .join('&');
  return `${url.slice(0, at)}?${query}`;
}

/**
 * Request ids: the caller's `X-Request-Id` when it is sane, else this process's random prefix and a counter (ids
 * stay unique across the gateway processes of a node).
 */
function requestIds(): (req: { headers: Record<string, string | string[] | undefined> }) => string {
  const prefix = randomBytes(3).toString('hex');
  let n = 0;
  return (req) => {
    const given = req.headers['x-request-id'];
    return typeof given === 'string' && SANE_REQUEST_ID.test(given) ? given : `${prefix}-${(++n).toString(36)}`;
  };
}

function bearer(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(h);
  return m ? m[1] : undefined;
}

function send(reply: FastifyReply, ret: number, body: string, retryAfterSec?: number): void {
  // PROTOCOL.md: 1102 (503) carries Retry-After; it asks for a reconnect now, to another gateway if there is one.
  if (retryAfterSec === undefined && ret === RET.GOING_AWAY) retryAfterSec = 0;
  if (retryAfterSec !== undefined) reply.header('retry-after', String(retryAfterSec));
  reply.code(httpStatusOf(ret)).header('content-type', 'application/json; charset=utf-8').header('cache-control', 'no-store').send(body);
}

function sendError(reply: FastifyReply, err: SynchatError): void {
  send(reply, err.ret, JSON.stringify({ ret: err.ret, errMsg: err.errMsg }));
}

/** Builds the Fastify app (not listening). */
export function buildHttpTransport(opts: HttpTransportOptions): FastifyInstance {
  const timeouts = { headersTimeout: opts.timeouts.headersMs, requestTimeout: opts.timeouts.requestMs, connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS };
  const app = Fastify({
    ...(opts.tls ? { https: { ...opts.tls, ...timeouts } } : { http: timeouts }),
    ...(opts.trustProxy ? { trustProxy: opts.trustProxy } : {}),
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    bodyLimit: opts.bodyLimitBytes,
    requestTimeout: opts.timeouts.requestMs,
    // Synccheck holds requests for up to 60 s; keep idle keep-alive sockets a little longer than a poll gap.
    keepAliveTimeout: 75_000,
    return503OnClosing: true,
    // On shutdown parked polls are answered first (SynccheckHandler.closeAll); idle keep-alive sockets must not hold close() for 75 s.
    forceCloseConnections: true,
    // Per-request logs cost more than the requests; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: requestIds(),
  });

  // The id is echoed, so a client can quote it and an operator find its log lines.
  app.addHook('onRequest', (req, reply, done) => {
    reply.header('x-request-id', req.id);
    done();
  });
  // Per-request lines only at debug (they cost more than the requests); never the headers, the body or a secret.
  if (opts.logger && (opts.logger.level === 'debug' || opts.logger.level === 'trace')) {
    app.addHook('onResponse', (req, reply, done) => {
      req.log.debug({ method: req.method, url: loggableUrl(req.url), statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
      done();
    });
  }

  registerBrowserHeaders(app, { isTls: opts.tls !== undefined });

  // Every socket is counted from its accept (with TLS: the raw socket, before its handshake) to its close; one over
  // a cap gets its first request answered 429/503 {ret:1205} and closed (a `/ws` upgrade: ws-transport.ts).
  app.server.on('connection', (socket: Socket) => void opts.caps.hold(socket));
  app.addHook('onRequest', (req, reply, done) => {
    const refusal = opts.caps.refusalOf(req.raw.socket);
    if (!refusal) return done();
    reply.code(refusal.httpStatus).header('connection', 'close').header('content-type', 'application/json; charset=utf-8').header('cache-control', 'no-store');
    reply.send(JSON.stringify({ ret: refusal.ret, errMsg: refusal.errMsg }));
  });

  const isDraining = opts.isDraining;
  if (isDraining) {
    app.addHook('onRequest', (_req, reply, done) => {
      if (isDraining()) reply.header('connection', 'close');
      done();
    });
  }

  // Probes (PROTOCOL.md `/healthz`, `/readyz`; docs/operations.md "Health and readiness").
  app.get('/healthz', (_req, reply) => send(reply, RET.OK, '{"ret":0}'));
  app.get('/readyz', async (_req, reply) => {
    const r = opts.ready ? await opts.ready() : { ret: RET.OK, body: '{"ret":0}' };
    reply.code(r.ret === RET.OK ? 200 : 503).header('content-type', 'application/json; charset=utf-8').header('cache-control', 'no-store').send(r.body);
  });

  const edgeStats = opts.edgeStats;
  if (edgeStats) {
    // Every JSON answer, whichever route or hook wrote it, begins `{"ret":N` (edge-stats.ts retOfAnswer).
    app.addHook('onSend', (req, _reply, payload, done) => {
      if (typeof payload === 'string') edgeStats.answeredBody(req.routeOptions.url === '/api/synccheck' ? 'longpoll' : 'http', payload);
      done(null, payload);
    });
  }

  // An empty JSON body means `{}` (POST /api/logout with no body is fine); bad JSON is ret 1.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, text, done) => {
    const s = String(text);
    if (s.trim() === '') return done(null, {});
    try {
      done(null, JSON.parse(s));
    } catch {
      done(new SynchatError(RET.BAD_REQUEST, 'body is not valid JSON'), undefined);
    }
  });

  app.setErrorHandler((err: any, req, reply) => {
    if (err instanceof SynchatError) return sendError(reply, err);
    const code: string | undefined = err?.code;
    if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      // Fastify marks the answer `Connection: close`, and Node then closes under a client still sending: the RST
      // that its next bytes draw makes the client's kernel drop our answer unread. Kept open, Node reads the rest
      // of the body and throws it away (within the request timeout) while the client reads the 413.
      reply.removeHeader('connection');
      return sendError(reply, new SynchatError(RET.TOO_LARGE, `body exceeds ${opts.bodyLimitBytes} bytes`));
    }
    if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return sendError(reply, new SynchatError(RET.BAD_REQUEST, 'Content-Type must be application/json'));
    if (typeof err?.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      return sendError(reply, new SynchatError(RET.BAD_REQUEST, String(err.message ?? 'bad request')));
    }
    req.log.error({ err }, 'unhandled error');
    sendError(reply, new SynchatError(RET.SERVER_ERROR));
  });

  app.setNotFoundHandler((req, reply) => {
    sendError(reply, new SynchatError(RET.NOT_FOUND, `no such route: ${req.method} ${req.url.split('?')[0]}`));
  });

  for (const [path, spec] of Object.entries(CALLS) as [CallPath, (typeof CALLS)[CallPath]][]) {
    if (path === '/api/synccheck' || path === '/api/qrlogin/poll') continue;
    app.route({
      method: spec.method,
      url: path,
      handler: async (req, reply) => {
        const input = spec.method === 'GET' ? req.query : req.body;
        const r = await opts.api.call(path, input, { sid: bearer(req), ip: req.ip, requestId: req.id, host: req.host });
        send(reply, r.ret, r.body, r.retryAfterSec);
      },
    });
  }

  const metrics = opts.metrics;
  if (metrics) {
    app.get('/metrics', async (req, reply) => {
      const refusal = adminRefusal(req, metrics.adminToken);
      if (refusal) return sendError(reply, refusal);
      let text: string;
      try {
        text = await metrics.text();
      } catch (err) {
        req.log.error({ err }, 'metrics failed');
        return sendError(reply, new SynchatError(RET.SERVER_ERROR));
      }
      reply.code(200).header('content-type', PROMETHEUS_CONTENT_TYPE).header('cache-control', 'no-store').send(text);
    });
  }

  if (opts.admin) registerAdminRoutes(app, { api: opts.api, ...opts.admin });
  if (opts.media) registerMediaRoutes(app, { api: opts.api, ...opts.media });
  if (opts.web) registerStaticRoutes(app, opts.web);

  app.get('/api/synccheck', (req, reply) => {
    let q: Record<string, any>;
    try {
      q = validateCall('/api/synccheck', req.query);
    } catch (err) {
      return sendError(reply, err as SynchatError);
    }
    return parkSynccheck(opts.synccheck, req, reply, { sid: bearer(req), syncKey: q.syncKey, timeoutMs: q.timeout }, (ret, body) => send(reply, ret, body));
  });

  if (opts.webwx) registerWebwxRoutes(app, { api: opts.api, synccheck: opts.synccheck, ...opts.webwx });

  // QR login's long poll (docs/protocol.md "QR login"): held in the core, which bounds how many; a client that goes
  // away cancels it there, so it never collects a session nobody would receive.
  app.get('/api/qrlogin/poll', (req, reply) => {
    const poll = opts.api.pollQrLogin(req.query, { ip: req.ip, requestId: req.id });
    let isDone = false;
    reply.raw.once('close', () => {
      if (!isDone) poll.cancel();
    });
    void poll.reply.then((r) => {
      isDone = true;
      if (!reply.raw.destroyed) send(reply, r.ret, r.body, r.retryAfterSec);
    });
    return reply;
  });

  return app;
}
