/**
 * The HTTP transport: Fastify routes for every call of the API table, long-poll synccheck, and the JSON error
 * edge (every failure is `{ret, errMsg}` with the table's status; unexpected errors are ret 9, logged, never
 * echoed). See docs/protocol.md "HTTP".
 */
import type { Socket } from 'node:net';
import type { TlsOptions } from 'node:tls';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { CALLS, RET, SynchatError, httpStatusOf, type CallPath } from '../../protocol/index.ts';
import { validateCall, type ChatApi } from '../../service/index.ts';
import type { TrustProxy } from '../client-address.ts';
import type { ConnectionCaps } from '../conn-caps.ts';
import type { SynccheckHandler } from '../longpoll/synccheck.ts';
import { registerBrowserHeaders } from './browser-headers.ts';
import { registerMediaRoutes, type MediaRoutesOptions } from './media-routes.ts';
import { registerStaticRoutes, type StaticRoutesOptions } from './static-routes.ts';
import type { EdgeStats } from '../edge-stats.ts';

/** Options of the HTTP transport. */
export interface HttpTransportOptions {
  api: ChatApi;
  synccheck: SynccheckHandler;
  /** pino logger options or false. */
  logger: boolean | Record<string, unknown>;
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
}

/**
 * How often Node looks for requests past their timeouts, in ms. Its default (30 s) let a 10 s header timeout hold
 * a trickling client 40 s; a check walks only the sockets with a request in progress.
 */
const TIMEOUT_CHECK_INTERVAL_MS = 1000;

function bearer(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(h);
  return m ? m[1] : undefined;
}

function send(reply: FastifyReply, ret: number, body: string, retryAfterSec?: number): void {
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
    logger: opts.logger,
    bodyLimit: opts.bodyLimitBytes,
    requestTimeout: opts.timeouts.requestMs,
    // Synccheck holds requests for up to 60 s; keep idle keep-alive sockets a little longer than a poll gap.
    keepAliveTimeout: 75_000,
    return503OnClosing: true,
    // On shutdown parked polls are answered first (SynccheckHandler.closeAll); idle keep-alive sockets must not hold close() for 75 s.
    forceCloseConnections: true,
    // Per-request logs cost more than the requests; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: (() => {
      let n = 0;
      return () => (++n).toString(36);
    })(),
  });

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
    if (path === '/api/synccheck') continue;
    app.route({
      method: spec.method,
      url: path,
      handler: async (req, reply) => {
        const input = spec.method === 'GET' ? req.query : req.body;
        const r = await opts.api.call(path, input, { sid: bearer(req), ip: req.ip, requestId: req.id });
        send(reply, r.ret, r.body, r.retryAfterSec);
      },
    });
  }

  if (opts.media) registerMediaRoutes(app, { api: opts.api, ...opts.media });
  if (opts.web) registerStaticRoutes(app, opts.web);

  app.get('/api/synccheck', (req, reply) => {
    let q: Record<string, any>;
    try {
      q = validateCall('/api/synccheck', req.query);
    } catch (err) {
      return sendError(reply, err as SynchatError);
    }
    let isDone = false;
    const respond = (ret: number, body: string) => {
      if (isDone) return;
      isDone = true;
      if (!reply.raw.destroyed) send(reply, ret, body);
    };
    void opts.synccheck.handle(bearer(req), q.syncKey, q.timeout, req.ip, respond).then((cancel) => {
      if (isDone) return;
      // A client that goes away unparks its poll at once.
      reply.raw.once('close', () => {
        if (!isDone) {
          isDone = true;
          cancel();
        }
      });
    }, (err) => {
      req.log.error({ err }, 'synccheck failed');
      respond(RET.SERVER_ERROR, JSON.stringify({ ret: RET.SERVER_ERROR, errMsg: 'server error' }));
    });
    return reply;
  });

  return app;
}
