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
/**
 * Chunked uploads being put together in this process, at most this many bytes in all: a webwx client names no
 * upload id the server gave it and sends no SHA-256, which Synchat's upload needs first, so the chunks wait here
 * until the last one arrives and the whole file is uploaded at once.
 */
const MAX_ASSEMBLY_BYTES = 64 * 1024 * 1024;
/** Chunks of the file's upload to the service, in bytes (its chunk size must lie between 64 KiB and 16 MiB). */
const UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024;
/** A chunked upload whose next chunk has not come for this long is dropped, in ms. */
const ASSEMBLY_IDLE_MS = 5 * 60_000;

interface Assembly {
  chunks: (Buffer | undefined)[];
  received: number;
  bytes: number;
  touchedAt: number;
}

/** Registers the media routes on `app` in a scope of their own (multipart bodies, authenticated before they are read). */
export function registerWebwxMedia(app: FastifyInstance, opts: WebwxMediaOptions): void {
  const { calls } = opts;
  const assemblies = new Map<string, Assembly>();
  let assemblyBytes = 0;
  const drop = (key: string) => {
    const a = assemblies.get(key);
    if (a) assemblyBytes -= a.bytes;
    assemblies.delete(key);
  };

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
   * One upload request: a whole file, or chunk `chunk` of `chunks` (0-based). Chunks wait in this process
   * ({@link MAX_ASSEMBLY_BYTES}) until all arrived; then the file goes through `/api/media/init`, one chunk and
   * `/api/media/complete`, and the answer of that last request carries the MediaId (wechat4u and ItChat read it
   * from the last answer). Identical content already stored is not uploaded again (init answers its mediaId).
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
    if (!file || typeof request.ClientMediaId === 'undefined') return void sendWx(reply, { MediaId: '' }, WX_RET.FAILED, 'needs the file part (filename) and uploadmediarequest');
    if (!opts.blobs) return void sendWx(reply, { MediaId: '' }, WX_RET.FAILED, 'media is not enabled on this server');
    const chunks = Number(fields.chunks ?? 1);
    const chunk = Number(fields.chunk ?? 0);
    if (!Number.isInteger(chunks) || chunks < 1 || chunks > 1024 || !Number.isInteger(chunk) || chunk < 0 || chunk >= chunks) {
      return void sendWx(reply, { MediaId: '' }, WX_RET.FAILED, 'chunk and chunks: 0 ≤ chunk < chunks ≤ 1024');
    }
    let whole = file;
    if (chunks > 1) {
      const now = Date.now();
      for (const [k, a] of assemblies) if (now - a.touchedAt > ASSEMBLY_IDLE_MS) drop(k);
      const key = `${sid}\n${String(request.ClientMediaId)}\n${name}`;
      let a = assemblies.get(key);
      if (!a) assemblies.set(key, (a = { chunks: new Array(chunks).fill(undefined), received: 0, bytes: 0, touchedAt: now }));
      if (a.chunks.length !== chunks) return void sendWx(reply, { MediaId: '' }, WX_RET.FAILED, 'chunks changed during the upload');
      if (!a.chunks[chunk]) {
        if (assemblyBytes + file.length > MAX_ASSEMBLY_BYTES) {
          drop(key);
          return void sendWx(reply, { MediaId: '' }, WX_RET.FAILED, 'too many uploads in progress on this server: try again later');
        }
        a.chunks[chunk] = file;
        a.received++;
        a.bytes += file.length;
        assemblyBytes += file.length;
      }
      a.touchedAt = now;
      if (a.received < chunks) return void sendWx(reply, { MediaId: '', StartPos: a.bytes });
      whole = Buffer.concat(a.chunks as Buffer[]);
      drop(key);
    }
    const sha256 = createHash('sha256').update(whole).digest('hex');
    const mime = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9!#$&^_.+*-]+$/.test(fields.type ?? '') ? fields.type! : 'application/octet-stream';
    const init = await calls.call(req, '/api/media/init', { size: whole.length, sha256, mime, chunkSize: UPLOAD_CHUNK_BYTES, name }, sid);
    if (init.ret !== RET.OK) return void sendWxFailure(reply, init, { MediaId: '' });
    let mediaId: string | undefined = init.mediaId;
    if (!mediaId) {
      for (const index of init.missing as number[]) {
        const bytes = new Uint8Array(whole.subarray(index * UPLOAD_CHUNK_BYTES, (index + 1) * UPLOAD_CHUNK_BYTES));
        const put = await calls.call(req, '/api/media/chunk', { uploadId: init.uploadId, index, bytes }, sid);
        if (put.ret !== RET.OK) return void sendWxFailure(reply, put, { MediaId: '' });
      }
      const done = await calls.call(req, '/api/media/complete', { uploadId: init.uploadId }, sid);
      if (done.ret !== RET.OK) return void sendWxFailure(reply, done, { MediaId: '' });
      mediaId = done.mediaId as string;
    }
    sendWx(reply, { MediaId: mediaId, StartPos: whole.length, CDNThumbImgHeight: 0, CDNThumbImgWidth: 0, EncryFileName: encodeURIComponent(name) });
  }
}

/** A download that cannot be served: HTTP 404 with the webwx failure as JSON (a client expecting bytes sees the status). */
function notFound(reply: FastifyReply, a: { ret: number; errMsg?: string }): FastifyReply {
  reply.code(404);
  return reply.header('content-type', 'application/json; charset=utf-8').header('cache-control', 'no-store').send(JSON.stringify({ BaseResponse: { Ret: a.ret === RET.NOT_LOGGED_IN || a.ret === RET.SESSION_REPLACED ? WX_RET.SESSION_INVALID : WX_RET.FAILED, ErrMsg: a.errMsg ?? '' } }));
}
