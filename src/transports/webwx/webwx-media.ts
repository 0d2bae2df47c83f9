/**
 * webwx media (webwx-protocol.md §8; docs/webwx.md "Media"): `webwxuploadmedia` (multipart, in chunks of 512 KiB
 * past that size) onto Synchat's media calls, and the downloads by message (`webwxgetmsgimg`, `webwxgetvoice`), by
 * media id (`webwxgetmedia`) and the avatars (`webwxgeticon`, `webwxgetheadimg`) onto `/api/media/message`,
 * `/api/media/info` and `/api/avatar`. Bytes are streamed by the media routes' {@link sendMedia}, never through the
 * core; voice is made MP3 here (the service's {@link voiceToMp3}).
 */
import { createHash } from 'node:crypto';
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RET } from '../../protocol/index.ts';
import { MAX_TRANSCODE_BYTES, TRANSCODED_VOICE_MIMES, VoiceTranscodeError, mediaBlobKey, voiceToMp3, type BlobStore } from '../../service/index.ts';
import { sendMedia } from '../http/media-routes.ts';
import { WX_PREFIX, WX_RET, peerOf } from './codec.ts';
import { bearerOf, cookiesOf, sendWx, sendWxFailure, type WxCalls } from './wx-request.ts';
import { sidOfToken } from './codec.ts';

/** Options of the media routes. */
export interface WebwxMediaOptions {
  calls: WxCalls;
  /** The service's media bytes; absent: media answers Ret -1. */
  blobs?: BlobStore;
}

/**
 * Largest part of one upload request, in bytes: clients send at most 512 KiB a request (ItChat and wechat4u cut
 * larger files into chunks of 524,288 bytes), plus room for a client that cuts a little differently.
 */
const MAX_PART_BYTES = 1024 * 1024;
/** The chunk size of webwx uploads (ItChat and wechat4u cut files over it into chunks of exactly this). */
const WX_CHUNK_BYTES = 512 * 1024;
/** Chunks of a whole file's upload to the service, in bytes (its chunk size must lie between 64 KiB and 16 MiB). */
const UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024;

/** Registers the media routes on `app` in a scope of their own (multipart bodies, authenticated before they are read). */
export function registerWebwxMedia(app: FastifyInstance, opts: WebwxMediaOptions): void {
  const { calls } = opts;

  void app.register(async (scope) => {
    await scope.register(multipart, { limits: { fileSize: MAX_PART_BYTES, files: 1, fields: 20, fieldSize: 16 * 1024, parts: 24 } });
    scope.setErrorHandler((err: any, req, reply) => {
      if (err?.statusCode === 413 || err?.code === 'FST_REQ_FILE_TOO_LARGE') return sendWx(reply, { MediaId: '' }, WX_RET.FAILED, `a part exceeds ${MAX_PART_BYTES} bytes`);
      if (typeof err?.statusCode === 'number' && err.statusCode < 500) return sendWx(reply, { MediaId: '' }, WX_RET.FAILED, String(err.message ?? 'bad request'));
      req.log.error({ err }, 'webwx media route failed');
      return sendWx(reply, { MediaId: '' }, WX_RET.FAILED, 'server error');
    });

    scope.post(
      `${WX_PREFIX}/webwxuploadmedia`,
      {
        // The session is checked before the body is read (as the native chunk PUT does): from the wxsid cookie or
        // the query, which both clients send; an unknown one never makes the server take in a megabyte.
        onRequest: async (req, reply) => {
          const r = await calls.api.checkSession(sidOfToken(cookiesOf(req).wxsid) ?? bearerOf(req, {}));
          if (r.ret === RET.OK) return;
          reply.header('connection', 'close');
          sendWxFailure(reply, JSON.parse(r.body), { MediaId: '' });
          return reply;
        },
      },
      async (req, reply) => {
        const fields: Record<string, string> = {};
        let file: Buffer | undefined;
        for await (const part of req.parts()) {
          if (part.type === 'file') file = await part.toBuffer();
          else fields[part.fieldname] = String(part.value);
        }
        await upload(req, reply, fields, file);
        return reply;
      },
    );

    scope.get(`${WX_PREFIX}/webwxgetmsgimg`, async (req, reply) => {
      const q = req.query as Record<string, unknown>;
      await byMessage(req, reply, q.MsgID ?? q.msgid, q.type === 'slave' ? 'thumb' : 'original');
      return reply;
    });
    scope.get(`${WX_PREFIX}/webwxgetvoice`, async (req, reply) => {
      const q = req.query as Record<string, unknown>;
      await byMessage(req, reply, q.msgid ?? q.MsgID, 'voice');
      return reply;
    });
    scope.get(`${WX_PREFIX}/webwxgetmedia`, async (req, reply) => {
      const q = req.query as Record<string, unknown>;
      const info = await calls.call(req, '/api/media/info', { mediaId: q.mediaid ?? q.MediaId });
      if (info.ret !== RET.OK) return notFound(reply, info);
      await serve(req, reply, info, 'original');
      return reply;
    });
    for (const name of ['webwxgeticon', 'webwxgetheadimg']) {
      scope.get(`${WX_PREFIX}/${name}`, async (req, reply) => {
        const q = req.query as Record<string, unknown>;
        let peer = peerOf(q.username, '');
        if (q.username === 'filehelper') {
          const me = await calls.user(req);
          peer = 'ret' in me ? undefined : me.username;
        }
        const r = peer === undefined ? { ret: RET.NOT_FOUND, errMsg: 'username: a UserName of this server' } : await calls.call(req, '/api/avatar', { peer });
        if (r.ret !== RET.OK) return notFound(reply, r);
        return reply.code(200).header('content-type', r.mime).header('cache-control', 'private, max-age=3600').send(Buffer.from(r.data, 'base64'));
      });
    }
  });

  async function serve(req: FastifyRequest, reply: FastifyReply, info: Record<string, any>, variant: 'original' | 'thumb'): Promise<void> {
    if (!opts.blobs) return void notFound(reply, { ret: RET.BAD_REQUEST, errMsg: 'media is not enabled on this server' });
    await sendMedia(req, reply, opts.blobs, info, variant === 'thumb' && !info.thumb ? 'original' : variant);
  }

  /**
   * The media of a message the caller may see. `voice` answers MP3, which is what webwx clients play: stored MP3 as
   * is, Opus in WebM or Ogg (what browsers record) transcoded per request ({@link voiceToMp3}), anything else (MP4,
   * WAV) Ret -1 saying so (docs/webwx.md "Not supported").
   */
  async function byMessage(req: FastifyRequest, reply: FastifyReply, msgId: unknown, variant: 'original' | 'thumb' | 'voice'): Promise<void> {
    const info = await calls.call(req, '/api/media/message', { msgId: typeof msgId === 'string' ? msgId : String(msgId ?? '') });
    if (info.ret !== RET.OK) return void notFound(reply, info);
    if (variant === 'voice' && info.mime !== 'audio/mpeg') return mp3Of(reply, info);
    await serve(req, reply, info, variant === 'thumb' ? 'thumb' : 'original');
  }

  async function mp3Of(reply: FastifyReply, info: Record<string, any>): Promise<void> {
    const refuse = (why: string) => notFound(reply, { ret: RET.BAD_REQUEST, errMsg: `this voice message is stored as ${info.mime}: ${why}` });
    if (!TRANSCODED_VOICE_MIMES.includes(info.mime)) return void refuse('this server makes MP3 from Opus (WebM, Ogg) only');
    if (!opts.blobs) return void refuse('media is not enabled on this server');
    if (info.size > MAX_TRANSCODE_BYTES) return void refuse(`over ${MAX_TRANSCODE_BYTES} bytes`);
    const chunks: Uint8Array[] = [];
    for await (const c of opts.blobs.read(mediaBlobKey(info.sha256, 'original'))) chunks.push(c);
    let mp3: Uint8Array;
    try {
      mp3 = await voiceToMp3(Buffer.concat(chunks));
    } catch (err) {
      if (err instanceof VoiceTranscodeError) return void refuse(err.message);
      throw err;
    }
    reply.code(200).header('content-type', 'audio/mpeg').header('content-length', String(mp3.length)).header('cache-control', 'private, max-age=31536000, immutable');
    reply.send(Buffer.from(mp3.buffer, mp3.byteOffset, mp3.length));
  }

  /**
   * One upload request: a whole file, or chunk `chunk` of `chunks` (0-based, 512 KiB each but the last). A whole file
   * goes through `/api/media/init` (with its SHA-256: content already stored is not uploaded again), its chunks and
   * `/api/media/complete`. A chunked file is one upload of the service named by the client's `ClientMediaId`
   * (`uploadId` at init, derived from the session so nobody else can name it): each request puts its chunk there,
   * whichever gateway process or node it reaches, and the request after which none is missing completes it. Its
   * answer carries the MediaId, which wechat4u and ItChat read from the last answer.
   */
  async function upload(req: FastifyRequest, reply: FastifyReply, fields: Record<string, string>, file: Buffer | undefined): Promise<void> {
    let request: Record<string, unknown> = {};
    try {
      request = JSON.parse(fields.uploadmediarequest ?? '{}') as Record<string, unknown>;
    } catch {
      // Answered below as a missing field.
    }
    const sid = sidOfToken(cookiesOf(req).wxsid) ?? bearerOf(req, request.BaseRequest);
    const name = fields.name ?? '';
    const failed = (errMsg: string) => void sendWx(reply, { MediaId: '' }, WX_RET.FAILED, errMsg);
    if (!file || typeof request.ClientMediaId === 'undefined') return failed('needs the file part (filename) and uploadmediarequest');
    if (!opts.blobs) return failed('media is not enabled on this server');
    const mime = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9!#$&^_.+*-]+$/.test(fields.type ?? '') ? fields.type! : 'application/octet-stream';
    const chunks = Number(fields.chunks ?? 1);
    const chunk = Number(fields.chunk ?? 0);
    if (!Number.isInteger(chunks) || chunks < 1 || !Number.isInteger(chunk) || chunk < 0 || chunk >= chunks) return failed('chunk and chunks: 0 ≤ chunk < chunks');
    const done = (mediaId: string, size: number) =>
      sendWx(reply, { MediaId: mediaId, StartPos: size, CDNThumbImgHeight: 0, CDNThumbImgWidth: 0, EncryFileName: encodeURIComponent(name) });

    if (chunks === 1) {
      const sha256 = createHash('sha256').update(file).digest('hex');
      const init = await calls.call(req, '/api/media/init', { size: file.length, sha256, mime, chunkSize: UPLOAD_CHUNK_BYTES, name }, sid);
      if (init.ret !== RET.OK) return void sendWxFailure(reply, init, { MediaId: '' });
      let mediaId: string | undefined = init.mediaId;
      if (!mediaId) {
        for (const index of init.missing as number[]) {
          const bytes = new Uint8Array(file.subarray(index * UPLOAD_CHUNK_BYTES, (index + 1) * UPLOAD_CHUNK_BYTES));
          const put = await calls.call(req, '/api/media/chunk', { uploadId: init.uploadId, index, bytes }, sid);
          if (put.ret !== RET.OK) return void sendWxFailure(reply, put, { MediaId: '' });
        }
        const completed = await calls.call(req, '/api/media/complete', { uploadId: init.uploadId }, sid);
        if (completed.ret !== RET.OK) return void sendWxFailure(reply, completed, { MediaId: '' });
        mediaId = completed.mediaId as string;
      }
      return void done(mediaId!, file.length);
    }

    const size = Number(request.TotalLen ?? fields.size);
    if (!Number.isSafeInteger(size) || size <= (chunks - 1) * WX_CHUNK_BYTES || size > chunks * WX_CHUNK_BYTES) {
      return failed(`TotalLen: ${chunks} chunks of ${WX_CHUNK_BYTES} bytes (the last one shorter) hold it`);
    }
    const uploadId = createHash('sha256').update(`webwx upload\n${sid}\n${String(request.ClientMediaId)}\n${name}\n${size}`).digest('base64url').slice(0, 43);
    const named = { size, mime, chunkSize: WX_CHUNK_BYTES, name, uploadId };
    const init = await calls.call(req, '/api/media/init', named, sid);
    if (init.ret !== RET.OK) return void sendWxFailure(reply, init, { MediaId: '' });
    if (init.mediaId) return void done(init.mediaId, size);
    if ((init.missing as number[]).includes(chunk)) {
      const put = await calls.call(req, '/api/media/chunk', { uploadId, index: chunk, bytes: new Uint8Array(file) }, sid);
      if (put.ret !== RET.OK) return void sendWxFailure(reply, put, { MediaId: '' });
    }
    // Asked again after the put: two chunks put at once on two processes both see the upload whole.
    const now = await calls.call(req, '/api/media/init', named, sid);
    if (now.ret !== RET.OK) return void sendWxFailure(reply, now, { MediaId: '' });
    if (now.mediaId) return void done(now.mediaId, size);
    if ((now.missing as number[]).length > 0) return void sendWx(reply, { MediaId: '', StartPos: Math.min(size, (chunk + 1) * WX_CHUNK_BYTES) });
    const completed = await calls.call(req, '/api/media/complete', { uploadId }, sid);
    if (completed.ret !== RET.OK) return void sendWxFailure(reply, completed, { MediaId: '' });
    done(completed.mediaId as string, size);
  }
}

/** A download that cannot be served: HTTP 404 with the webwx failure as JSON (a client expecting bytes sees the status). */
function notFound(reply: FastifyReply, a: { ret: number; errMsg?: string }): FastifyReply {
  reply.code(404);
  return reply.header('content-type', 'application/json; charset=utf-8').header('cache-control', 'no-store').send(JSON.stringify({ BaseResponse: { Ret: a.ret === RET.NOT_LOGGED_IN || a.ret === RET.SESSION_REPLACED ? WX_RET.SESSION_INVALID : WX_RET.FAILED, ErrMsg: a.errMsg ?? '' } }));
}
