/**
 * HTTP routes of media (docs/protocol.md "Media"): `PUT /api/media/<uploadId>/<index>` takes one raw chunk (its
 * own body limit, any Content-Type), `POST /api/media/<uploadId>/complete`, and `GET /api/media/<mediaId>` and
 * `/thumb` with Range, ETag and caching headers. The service decides (authorization, metadata); the bytes of a
 * read are streamed here from the same BlobStore the service wrote, so they never cross the gateway↔core link.
 * Every failure is JSON `{ret, errMsg}`.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RET, SynchatError, httpStatusOf } from '../../protocol/index.ts';
import { contentDisposition, mediaBlobKey, type BlobStore, type ChatApi } from '../../service/index.ts';

/** Options of the media routes. */
export interface MediaRoutesOptions {
  api: ChatApi;
  /** Where stored media are read from (the service's BlobStore, or one over the same storage). */
  blobs: BlobStore;
  /** Largest chunk body, in bytes. @default 16777216 (16 MiB) */
  maxChunkBytes: number;
}

/** Stored media never change under one id: a reader may keep them, privately. */
const CACHE_CONTROL = 'private, max-age=31536000, immutable';

function bearer(req: FastifyRequest): string | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  return m ? m[1] : undefined;
}

function sendJson(reply: FastifyReply, ret: number, body: string, status = httpStatusOf(ret)): void {
  reply.code(status).header('content-type', 'application/json; charset=utf-8').header('cache-control', 'no-store').send(body);
}

function sendError(reply: FastifyReply, ret: number, errMsg: string, status?: number): void {
  sendJson(reply, ret, JSON.stringify({ ret, errMsg }), status);
}

/** A parsed `Range` header: one satisfiable range, `unsatisfiable`, or `ignore` (absent, malformed, several ranges). */
type RangeResult = { start: number; end: number } | 'unsatisfiable' | 'ignore';

/** RFC 9110 §14: one `bytes=` range; several ranges are served whole (allowed: a server may ignore Range). */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (!header) return 'ignore';
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'ignore';
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return 'ignore';
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((t) => {
    const tag = t.trim().replace(/^W\//, '');
    return tag === '*' || tag === etag;
  });
}

/** Registers the media routes on `app` (in their own scope: raw-body parser, chunk body limit). */
export function registerMediaRoutes(app: FastifyInstance, opts: MediaRoutesOptions): void {
  void app.register(async (scope) => {
    // Chunks are raw bytes whatever the Content-Type says; nothing here parses JSON.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: opts.maxChunkBytes }, (_req, body, done) => done(null, body));
    scope.setErrorHandler((err: any, req, reply) => {
      if (err instanceof SynchatError) return sendError(reply, err.ret, err.errMsg);
      if (err?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return sendError(reply, RET.TOO_LARGE, `chunk exceeds ${opts.maxChunkBytes} bytes`);
      if (typeof err?.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
        return sendError(reply, RET.BAD_REQUEST, String(err.message ?? 'bad request'));
      }
      req.log.error({ err }, 'media route failed');
      sendError(reply, RET.SERVER_ERROR, 'server error');
    });

    scope.put<{ Params: { uploadId: string; index: string } }>(
      '/api/media/:uploadId/:index',
      {
        bodyLimit: opts.maxChunkBytes,
        // Authenticate before the body is read (onRequest runs before Fastify consumes it): an unknown bearer
        // gets 401 {ret:1100} and the connection is closed with the body unread, so no one without a session
        // makes the server take in 16 MiB (#11).
        onRequest: async (req, reply) => {
          const r = await opts.api.checkSession(bearer(req));
          if (r.ret === RET.OK) return;
          reply.header('connection', 'close');
          sendJson(reply, r.ret, r.body);
          return reply;
        },
      },
      async (req, reply) => {
        const { uploadId, index } = req.params;
        const bytes = req.body instanceof Uint8Array ? req.body : new Uint8Array(0);
        const r = await opts.api.call(
          '/api/media/chunk',
          { uploadId, index: /^\d{1,9}$/.test(index) ? Number(index) : index, bytes },
          { sid: bearer(req), ip: req.ip, requestId: req.id },
        );
        sendJson(reply, r.ret, r.body);
        return reply;
      },
    );

    scope.post<{ Params: { uploadId: string } }>('/api/media/:uploadId/complete', async (req, reply) => {
      const r = await opts.api.call('/api/media/complete', { uploadId: req.params.uploadId }, { sid: bearer(req), ip: req.ip, requestId: req.id });
      sendJson(reply, r.ret, r.body);
      return reply;
    });

    // An async handler must return the reply after sending a stream, or Fastify ends the response empty.
    scope.get<{ Params: { mediaId: string } }>('/api/media/:mediaId', async (req, reply) => {
      await serve(req, reply, 'original');
      return reply;
    });
    scope.get<{ Params: { mediaId: string } }>('/api/media/:mediaId/thumb', async (req, reply) => {
      await serve(req, reply, 'thumb');
      return reply;
    });
  });

  async function serve(req: FastifyRequest<{ Params: { mediaId: string } }>, reply: FastifyReply, variant: 'original' | 'thumb'): Promise<void> {
    const r = await opts.api.call('/api/media/info', { mediaId: req.params.mediaId }, { sid: bearer(req), ip: req.ip, requestId: req.id });
    if (r.ret !== RET.OK) return sendJson(reply, r.ret, r.body);
    return sendMedia(req, reply, opts.blobs, JSON.parse(r.body), variant);
  }
}

/**
 * Streams the bytes of media `info` (an `/api/media/info` answer, which authorized the reader) with Range, ETag and
 * caching headers: the media routes here, and the WeChat-web gateway's downloads (src/transports/webwx).
 */
export async function sendMedia(req: FastifyRequest, reply: FastifyReply, blobs: BlobStore, info: any, variant: 'original' | 'thumb'): Promise<void> {
  const v: { mime: string; size: number; etag: string } | null = variant === 'thumb' ? info.thumb : info;
  if (!v) return sendError(reply, RET.NOT_FOUND, 'this media has no thumbnail');
  const key = mediaBlobKey(info.sha256, variant);
  const size = await blobs.size(key);
  if (size === undefined) throw new Error(`blob ${key} of media ${info.mediaId} is missing`);

  const isFile = variant === 'original' && info.kind === 'file';
  reply
    .header('etag', v.etag)
    .header('cache-control', CACHE_CONTROL)
    .header('accept-ranges', 'bytes')
    .header('x-content-type-options', 'nosniff')
    // A file is never rendered by the browser as a page of this origin.
    .header('content-security-policy', "default-src 'none'; sandbox")
    .header('content-type', isFile ? 'application/octet-stream' : v.mime);
  if (variant === 'original' && (isFile || info.name)) {
    reply.header('content-disposition', contentDisposition(isFile ? 'attachment' : 'inline', info.name || 'file'));
  }
  if (etagMatches(req.headers['if-none-match'], v.etag)) {
    reply.code(304).send();
    return;
  }
  const ifRange = req.headers['if-range'];
  const range = ifRange && ifRange !== v.etag ? 'ignore' : parseRange(req.headers.range, size);
  if (range === 'unsatisfiable') {
    reply.header('content-range', `bytes */${size}`);
    return sendError(reply, RET.BAD_REQUEST, `range not satisfiable: the media has ${size} bytes`, 416);
  }
  if (range === 'ignore') {
    reply.code(200).header('content-length', String(size));
    if (req.method === 'HEAD') return void reply.send();
    return void reply.send(Readable.from(blobs.read(key)));
  }
  reply
    .code(206)
    .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
    .header('content-length', String(range.end - range.start + 1));
  if (req.method === 'HEAD') return void reply.send();
  return void reply.send(Readable.from(blobs.read(key, range.start, range.end)));
}
