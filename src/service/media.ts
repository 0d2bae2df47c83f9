/**
 * MediaService: chunked uploads, de-duplicated storage, thumbnails, and read authorization for images, voice
 * and files (PROTOCOL.md media rows; docs/protocol.md "Media"). The imperative shell over src/core/media-rules.ts:
 * metadata goes through the chat service's group commit into the same Store as messages; bytes go to a
 * {@link BlobStore}. Chunks are files (`uploads/<uploadId>/<index>`), so the chunks present are the ones
 * received; content lives once per SHA-256 (`content/<xx>/<sha256>/original|thumb`).
 */
import { createHash, randomBytes } from 'node:crypto';
import sharp from 'sharp';
import {
  MAX_IMAGE_PIXELS,
  SNIFF_BYTES,
  THUMB_MAX_PX,
  checkDeclaredType,
  checkMediaForType,
  checkUploadInit,
  chunkCount,
  chunkLength,
  detectType,
  mayReadMedia,
  mediaSendOf,
  missingChunks,
  safeFileName,
  type DetectedType,
} from '../core/media-rules.ts';
import type { BlobStore, Clock, MediaBlobRow, MediaRow, MediaUploadRow, SessionRow, Store, StoreReader, StoreTx } from '../core/ports.ts';
import { isMessageParticipant } from '../core/chats.ts';
import { DISK_FULL_ERRMSG, RET, SynchatError } from '../protocol/index.ts';
import type { Job } from './group-commit.ts';
import { Semaphore } from './semaphore.ts';
import type { Logger } from './service.ts';

/** Media settings (from the server configuration). */
export interface MediaOptions {
  blobs: BlobStore;
  /** Largest file, in bytes. @default 104857600 (100 MiB) */
  maxFileBytes: number;
  /** Bytes one user may upload per rolling 24 h; instant (de-duplicated) uploads are free. @default 2147483648 (2 GiB) */
  maxDailyBytes: number;
  /** An upload untouched this long is removed with its chunks, in ms. @default 86400000 (24 h) */
  uploadExpiryMs: number;
}

/** What the media service needs from the chat service. */
export interface MediaDeps {
  store: Store;
  clock: Clock;
  logger: Logger;
  /** Runs a write job in the chat service's group commit (the Store allows one writer). */
  run<T>(job: Job<T>): Promise<T>;
}

type Body = Record<string, any>;
type Variant = 'original' | 'thumb';

const DAY_MS = 24 * 60 * 60_000;
/** How many other users' media objects of one content the instant-upload check looks at. */
const INSTANT_CANDIDATES = 50;
/** Stale uploads removed per sweep. */
const SWEEP_BATCH = 200;

/** The `sha256` of an upload whose client did not declare one (`uploadId` at init): `complete` computes it. */
const UNHASHED = '';

/** Blob key of stored content (`variant` original or thumb); the HTTP transport reads it from the same BlobStore. */
export function mediaBlobKey(sha256: string, variant: Variant): string {
  return `content/${sha256.slice(0, 2)}/${sha256}/${variant}`;
}

function chunkPrefix(uploadId: string): string {
  return `uploads/${uploadId}`;
}

/** Where work on an upload's bytes happens during its complete (removed after it, or by the sweep after a crash). */
function scratchPrefix(uploadId: string): string {
  return `scratch/${uploadId}`;
}

function newId(): string {
  return randomBytes(16).toString('base64url');
}

function fail(ret: SynchatError['ret'], errMsg: string, data?: Record<string, unknown>): never {
  throw new SynchatError(ret, errMsg, data);
}

/** What {@link processImage} made of an image. */
interface ProcessedImage {
  /** True when the served original was re-encoded (into the `reencodedPath` given); else it is the upload. */
  isReencoded: boolean;
  width: number;
  height: number;
  thumb: Uint8Array;
}

/**
 * Image decodes that may run at once. A decode holds up to {@link MAX_IMAGE_PIXELS} × 4 bytes (200 MB) of
 * pixels at worst, so this bounds image memory to about 400 MB however many completes arrive together; the
 * others wait their turn. Two, for this machine's two cores (sharp runs one libvips thread per decode here).
 */
const MAX_CONCURRENT_DECODES = 2;

/** JPEGs re-encoded with Huffman optimisation up to this many pixels (a 12-megapixel phone photo). */
const OPTIMISED_JPEG_MAX_PIXELS = 12_000_000;

// libvips keeps recent decodes in a cache (50 MB, 20 files by default): every image here is decoded once or
// twice and then never again, so the cache would only hold memory.
sharp.cache(false);

/** strerror's text for ENOSPC and EDQUOT, as libvips reports a write that failed on a full disk. */
const DISK_FULL_STRERROR = /No space left on device|Disk quota exceeded/;

/**
 * Makes what is served of an image, reading the upload from `inputPath` (never whole into memory: libvips
 * decodes it from the file, sequentially): EXIF orientation applied, metadata (EXIF with GPS, XMP, IPTC,
 * comments) removed by re-encoding into `reencodedPath` when present (the ICC profile is kept so colours stay
 * right), and a WebP thumbnail inside {@link THUMB_MAX_PX}². An image without such metadata is served as
 * uploaded (no re-encoding loss). Throws on bytes the library cannot decode, and before decoding an image of
 * more than {@link MAX_IMAGE_PIXELS} (a decompression bomb: a small file of huge dimensions).
 */
async function processImage(inputPath: string, mime: string, reencodedPath: string): Promise<ProcessedImage> {
  const isMultiFrame = mime === 'image/gif' || mime === 'image/webp';
  const opts = { limitInputPixels: MAX_IMAGE_PIXELS, failOn: 'error' as const, sequentialRead: true };
  const meta = await sharp(inputPath, opts).metadata();
  const orientation = meta.orientation ?? 1;
  const hasMetadata = Boolean(meta.exif || meta.xmp || meta.iptc || meta.tifftagPhotoshop || meta.comments?.length || orientation !== 1);
  const pages = meta.pages ?? 1;
  const width = orientation >= 5 ? (meta.pageHeight ?? meta.height) : meta.width;
  const height = orientation >= 5 ? meta.width : (meta.pageHeight ?? meta.height);
  if (hasMetadata) {
    const animated = isMultiFrame && pages > 1;
    let img = sharp(inputPath, { ...opts, animated }).keepIccProfile();
    if (!animated) img = img.rotate(); // honour EXIF orientation, then drop it with the rest
    // Huffman optimisation holds every coefficient of the image until the end: on a 46-megapixel JPEG with EXIF,
    // complete grew RSS by 331 MB with it and 70 MB without. Without it files are larger (6% on that noise, 33% on
    // a smooth 6-megapixel photo), so only large images do without.
    const isLarge = (meta.width ?? 0) * (meta.pageHeight ?? meta.height ?? 0) > OPTIMISED_JPEG_MAX_PIXELS;
    if (mime === 'image/jpeg') img = img.jpeg({ quality: 90, optimiseCoding: !isLarge });
    else if (mime === 'image/png') img = img.png();
    else if (mime === 'image/webp') img = img.webp({ quality: 90 });
    else if (mime === 'image/gif') img = img.gif();
    else img = img.avif({ quality: 60 });
    await img.toFile(reencodedPath);
  }
  const thumb = await sharp(inputPath, opts)
    .rotate()
    .resize(THUMB_MAX_PX, THUMB_MAX_PX, { fit: 'inside', withoutEnlargement: true })
    .webp({ quality: 70 })
    .toBuffer();
  return { isReencoded: hasMetadata, width: width ?? 0, height: height ?? 0, thumb };
}

/** Media uploads and reads. Created by the chat service, which routes the media calls here. */
export class MediaService {
  readonly #o: MediaOptions;
  readonly #d: MediaDeps;
  readonly #completing = new Map<string, Promise<Record<string, unknown>>>();
  readonly #decodes = new Semaphore(MAX_CONCURRENT_DECODES);
  readonly #sweepTimer: NodeJS.Timeout;
  #lastSweep = 0;
  #sweeping: Promise<void> | undefined;

  constructor(options: MediaOptions, deps: MediaDeps) {
    this.#o = options;
    this.#d = deps;
    this.#sweepTimer = setInterval(() => void this.sweep(), Math.max(250, Math.min(options.uploadExpiryMs / 2, 10 * 60_000)));
    this.#sweepTimer.unref();
  }

  /** Stops the expiry timer and waits for a running sweep. */
  async close(): Promise<void> {
    clearInterval(this.#sweepTimer);
    await this.#sweeping;
  }

  // ---- calls -------------------------------------------------------------------------------------------------

  /**
   * `/api/media/init`: resume, instant (content the user may already read), or a new upload. With `uploadId` instead
   * of `sha256` (a client that learns the hash only at the end), the upload has that id, a repeat resumes it, and the
   * hash is the one `complete` computes (no instant upload).
   */
  async init(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const now = this.#d.clock.now();
    if (now - this.#lastSweep > Math.min(this.#o.uploadExpiryMs / 4, 60_000)) await this.sweep();
    const size: number = b.size;
    const name = b.name === undefined ? '' : safeFileName(b.name);
    if (b.sha256 === undefined) return this.#initNamed(s, b.uploadId, size, name, b, now);
    const sha256 = String(b.sha256).toLowerCase();
    const read = this.#d.store.read;

    // Instant upload only for content this user may already read: anyone else uploads every chunk, so the
    // answer never tells a user that someone else stored this content (docs/protocol.md "Media").
    const blob = await read.getMediaBlob(sha256);
    if (blob && blob.size === size) {
      for (const m of await read.findMediaBySha(sha256, s.uin, INSTANT_CANDIDATES)) {
        if (!(await this.#mayRead(read, s.uin, m))) continue;
        const refusal = checkDeclaredType(String(b.mime), { kind: blob.kind, mime: blob.mime });
        if (refusal) fail(refusal.ret, refusal.errMsg);
        return this.#d.run(async (tx) => {
          const reuse = m.uin === s.uin && m.name === name;
          const mediaId = reuse ? m.mediaId : newId();
          if (!reuse) await tx.insertMedia({ mediaId, uin: s.uin, sha256, name, createTime: now, countedBytes: 0 });
          const uploadId = newId();
          await tx.insertUpload({
            uploadId, uin: s.uin, sha256, size, chunkSize: b.chunkSize, mime: String(b.mime), name,
            state: 'done', mediaId, createTime: now, updateTime: now,
          });
          return { uploadId, missing: [], mediaId, chunkSize: b.chunkSize };
        });
      }
    }

    const pending = await read.findPendingUpload(s.uin, sha256, size);
    if (pending) return this.#resume(pending, now);
    // Size and chunking first, outside the transaction: a refusal that depends on nothing stored costs no write.
    const refusal = checkUploadInit({ size, chunkSize: b.chunkSize }, this.#o, 0);
    if (refusal) fail(refusal.ret, refusal.errMsg);
    const created = await this.#d.run(async (tx, fx) => {
      // The daily quota is read and reserved in one transaction, under the uploader's log lock: SQLite runs jobs
      // one at a time, and on PostgreSQL the lock (a row of heads, FOR UPDATE) makes every node's init of this
      // user wait for the previous one's commit. Checked outside, 30 parallel inits reserved 2.9 GiB of 2 GiB.
      await fx.lock([s.uin]);
      const again = await tx.findPendingUpload(s.uin, sha256, size);
      if (again) return { row: again, isNew: false };
      const quota = checkUploadInit({ size, chunkSize: b.chunkSize }, this.#o, await tx.usedUploadBytes(s.uin, now - DAY_MS));
      if (quota) fail(quota.ret, quota.errMsg);
      const row: MediaUploadRow = {
        uploadId: newId(), uin: s.uin, sha256, size, chunkSize: b.chunkSize, mime: String(b.mime), name,
        state: 'pending', mediaId: null, createTime: now, updateTime: now,
      };
      await tx.insertUpload(row);
      return { row, isNew: true };
    });
    if (!created.isNew) return this.#resume(created.row, now);
    return { uploadId: created.row.uploadId, missing: missingChunks(chunkCount(size, b.chunkSize), []), chunkSize: b.chunkSize };
  }

  /** An upload named by its client ({@link UNHASHED}): made once, resumed by every repeat; another user's id is ret 6. */
  async #initNamed(s: SessionRow, uploadId: string, size: number, name: string, b: Body, now: number): Promise<Record<string, unknown>> {
    const answer = async (up: MediaUploadRow): Promise<Record<string, unknown>> => {
      if (up.uin !== s.uin || up.size !== size || up.chunkSize !== b.chunkSize) fail(RET.CONFLICT, 'uploadId: taken by another upload');
      if (up.state === 'done') return { uploadId, missing: [], mediaId: up.mediaId, chunkSize: up.chunkSize };
      return this.#resume(up, now);
    };
    const found = await this.#d.store.read.getUpload(uploadId);
    if (found) return answer(found);
    const refusal = checkUploadInit({ size, chunkSize: b.chunkSize }, this.#o, 0);
    if (refusal) fail(refusal.ret, refusal.errMsg);
    const created = await this.#d.run(async (tx, fx) => {
      await fx.lock([s.uin]);
      const again = await tx.getUpload(uploadId);
      if (again) return { row: again, isNew: false };
      const quota = checkUploadInit({ size, chunkSize: b.chunkSize }, this.#o, await tx.usedUploadBytes(s.uin, now - DAY_MS));
      if (quota) fail(quota.ret, quota.errMsg);
      const row: MediaUploadRow = {
        uploadId, uin: s.uin, sha256: UNHASHED, size, chunkSize: b.chunkSize, mime: String(b.mime), name,
        state: 'pending', mediaId: null, createTime: now, updateTime: now,
      };
      await tx.insertUpload(row);
      return { row, isNew: true };
    });
    if (!created.isNew) return answer(created.row);
    return { uploadId, missing: missingChunks(chunkCount(size, b.chunkSize), []), chunkSize: b.chunkSize };
  }

  async #resume(up: MediaUploadRow, now: number): Promise<Record<string, unknown>> {
    await this.#d.run((tx) => tx.touchUpload(up.uploadId, now));
    const present = (await this.#o.blobs.list(chunkPrefix(up.uploadId))).map(Number).filter(Number.isInteger);
    return { uploadId: up.uploadId, missing: missingChunks(chunkCount(up.size, up.chunkSize), present), chunkSize: up.chunkSize };
  }

  /** `/api/media/chunk`: one chunk's bytes (from `PUT /api/media/<uploadId>/<index>` or the long connection). */
  async putChunk(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const bytes: unknown = b.bytes;
    if (!(bytes instanceof Uint8Array)) fail(RET.BAD_REQUEST, 'chunk bytes travel as the raw body of PUT /api/media/<uploadId>/<index>');
    const up = await this.#d.store.read.getUpload(b.uploadId);
    if (!up || up.uin !== s.uin) fail(RET.NOT_FOUND, 'no such upload');
    if (up.state === 'done') return {}; // already complete: a late retry changes nothing
    const expected = chunkLength(up.size, up.chunkSize, b.index);
    if (expected < 0) fail(RET.BAD_REQUEST, `index: must be below ${chunkCount(up.size, up.chunkSize)}`);
    if (bytes.length !== expected) fail(RET.BAD_REQUEST, `chunk ${b.index} must be ${expected} bytes, got ${bytes.length}`);
    await this.#o.blobs.put(`${chunkPrefix(up.uploadId)}/${b.index}`, bytes);
    return {};
  }

  /** `/api/media/complete`: verify, detect, store once per content, answer the media id. Repeatable. */
  complete(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const uploadId: string = b.uploadId;
    const key = `${s.uin}:${uploadId}`;
    let p = this.#completing.get(key);
    if (!p) {
      p = this.#complete(s, uploadId).finally(() => this.#completing.delete(key));
      this.#completing.set(key, p);
    }
    return p;
  }

  async #complete(s: SessionRow, uploadId: string): Promise<Record<string, unknown>> {
    const read = this.#d.store.read;
    let up = await read.getUpload(uploadId);
    if (!up || up.uin !== s.uin) fail(RET.NOT_FOUND, 'no such upload');
    if (up.state === 'done') return this.#describe(up.mediaId!, await read.getMediaBlob((await read.getMedia(up.mediaId!))?.sha256 ?? up.sha256));
    const blobs = this.#o.blobs;
    const count = chunkCount(up.size, up.chunkSize);
    const prefix = chunkPrefix(uploadId);
    const missing = missingChunks(count, (await blobs.list(prefix)).map(Number).filter(Number.isInteger));
    if (missing.length) fail(RET.BAD_REQUEST, `chunks still missing: ${missing.length} of ${count}`, { missing });
    const keys = Array.from({ length: count }, (_, i) => `${prefix}/${i}`);

    // Verify before anything is stored: size, then SHA-256 over the chunks in order.
    const hash = createHash('sha256');
    let total = 0;
    const head: Uint8Array[] = [];
    for (const key of keys) {
      for await (const part of blobs.read(key)) {
        if (total < SNIFF_BYTES) head.push(part.subarray(0, SNIFF_BYTES - total));
        total += part.length;
        hash.update(part);
      }
    }
    if (total !== up.size) await this.#discard(up, `size mismatch: received ${total} bytes, declared ${up.size}`);
    const digest = hash.digest('hex');
    if (up.sha256 === UNHASHED) up = { ...up, sha256: digest };
    else if (digest !== up.sha256) {
      await this.#discard(up, `sha256 mismatch: the uploaded bytes hash to ${digest}, not ${up.sha256}; nothing was stored, upload again`);
    }
    const detected = detectType(Buffer.concat(head));
    const refusal = checkDeclaredType(up.mime, detected);
    if (refusal) await this.#discard(up, refusal.errMsg);

    let blob = await read.getMediaBlob(up.sha256);
    if (blob) {
      // Same content already stored (by anyone): keep one copy. The answer is the same as a first upload, and
      // so is the work (done into scratch keys, then dropped), so its time does not tell either.
      await this.#store(up, keys, detected, (variant) => `${scratchPrefix(up.uploadId)}/${variant}`)
        .catch(() => undefined)
        .finally(() => blobs.deletePrefix(scratchPrefix(up.uploadId)));
      const again = checkDeclaredType(up.mime, { kind: blob.kind, mime: blob.mime });
      if (again) await this.#discard(up, again.errMsg);
    } else blob = await this.#store(up, keys, detected, (variant) => mediaBlobKey(up.sha256, variant));

    const now = this.#d.clock.now();
    const mediaId = newId();
    const stored = blob;
    await this.#d.run(async (tx) => {
      await tx.insertMediaBlob(stored);
      await tx.insertMedia({ mediaId, uin: s.uin, sha256: up.sha256, name: up.name, createTime: now, countedBytes: up.size });
      await tx.finishUpload(uploadId, mediaId, now);
    });
    await blobs.deletePrefix(prefix).catch((err) => this.#d.logger.warn({ err, uploadId }, 'could not remove chunks'));
    return this.#describe(mediaId, stored);
  }

  /** Writes the served original (and thumbnail) of new content under `keyOf(variant)`; answers its blob row. */
  async #store(up: MediaUploadRow, keys: string[], detected: DetectedType, keyOf: (v: Variant) => string): Promise<MediaBlobRow> {
    const blobs = this.#o.blobs;
    const row: MediaBlobRow = {
      sha256: up.sha256, size: up.size, kind: detected.kind, mime: detected.mime, servedBytes: up.size,
      width: 0, height: 0, thumbBytes: 0, thumbMime: '', createTime: this.#d.clock.now(),
    };
    if (detected.kind === 'image') {
      // The upload is assembled into one file (streamed) that the decoder reads: a 100 MiB image is never one
      // buffer here. Scratch keys of this upload, removed whatever happens.
      const input = `${scratchPrefix(up.uploadId)}/input`;
      const reencoded = `${scratchPrefix(up.uploadId)}/reencoded`;
      try {
        await blobs.concat(input, keys);
        let image: ProcessedImage | undefined;
        try {
          image = await this.#decodes.run(() => processImage(blobs.filePath(input), detected.mime, blobs.filePath(reencoded)));
        } catch (err) {
          // libvips tells a failed write only in its text ("system error: No space left on device", strerror's
          // words): a full disk is the server's failure, never the image's, so the upload is kept for a retry.
          if (DISK_FULL_STRERROR.test((err as Error).message)) throw new SynchatError(RET.SERVER_ERROR, DISK_FULL_ERRMSG);
          if (up.mime.toLowerCase().startsWith('image/')) {
            await this.#discard(up, `the image could not be decoded: ${(err as Error).message.split('\n')[0]}`);
          }
          // Declared as a file: keep it as one.
          row.kind = 'file';
          row.mime = 'application/octet-stream';
        }
        const served = image?.isReencoded ? reencoded : input;
        await blobs.concat(keyOf('original'), [served]);
        if (!image) return row;
        await blobs.put(keyOf('thumb'), image.thumb);
        Object.assign(row, {
          servedBytes: (await blobs.size(served)) ?? up.size, width: image.width, height: image.height,
          thumbBytes: image.thumb.length, thumbMime: 'image/webp',
        });
        return row;
      } finally {
        await Promise.all([blobs.delete(input), blobs.delete(reencoded)]);
      }
    }
    await blobs.concat(keyOf('original'), keys);
    return row;
  }

  /** Removes a failed upload and its chunks, then refuses with `errMsg` (ret 1). */
  async #discard(up: MediaUploadRow, errMsg: string): Promise<never> {
    await this.#d.run((tx) => tx.deleteUpload(up.uploadId));
    await this.#o.blobs.deletePrefix(chunkPrefix(up.uploadId));
    fail(RET.BAD_REQUEST, errMsg);
  }

  #describe(mediaId: string, blob: MediaBlobRow | undefined): Record<string, unknown> {
    if (!blob) return { mediaId };
    return {
      mediaId,
      kind: blob.kind,
      mime: blob.mime,
      size: blob.servedBytes,
      ...(blob.kind === 'image' && blob.width ? { width: blob.width, height: blob.height } : {}),
    };
  }

  /**
   * `/api/media/info`: what a reader needs to serve or show the media. Unknown and forbidden look the same
   * (ret 3), so a stranger learns nothing.
   */
  async info(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const read = this.#d.store.read;
    const media = await read.getMedia(b.mediaId);
    const blob = media && (await this.#mayRead(read, s.uin, media)) ? await read.getMediaBlob(media.sha256) : undefined;
    if (!media || !blob) fail(RET.NOT_FOUND, 'no such media');
    const tag = blob.sha256.slice(0, 32);
    return {
      ...this.#describe(media.mediaId, blob),
      sha256: blob.sha256,
      name: media.name,
      createTime: media.createTime,
      etag: `"${tag}-o"`,
      thumb: blob.thumbBytes ? { mime: blob.thumbMime, size: blob.thumbBytes, etag: `"${tag}-t"` } : null,
    };
  }

  /**
   * `/api/media/message`: the media of message `msgId` (as `/api/media/info`, plus the message's `type`), for a
   * participant of its conversation. A message without media, recalled, unknown or not the caller's to see: ret 3.
   */
  async ofMessage(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const read = this.#d.store.read;
    const msg = await read.getMessage(Number(b.msgId));
    const members = msg?.groupId ? await read.getMembers(msg.groupId) : [];
    if (!msg || !msg.mediaId || msg.revoked || !isMessageParticipant(msg, s.uin, members)) fail(RET.NOT_FOUND, 'no such message with media');
    return { msgId: b.msgId, type: msg.type, ...(await this.info(s, { mediaId: msg.mediaId })) };
  }

  // ---- used by sendmsg ---------------------------------------------------------------------------------------

  /**
   * Inside a send's transaction: the media must exist, be readable by the sender (its uploader, or a member of
   * a conversation where it was sent) and fit the message type. Unknown and forbidden are both ret 3.
   */
  async checkSend(tx: StoreReader, uin: number, type: number, mediaId: string): Promise<void> {
    const media = await tx.getMedia(mediaId);
    if (!media || !(await this.#mayRead(tx, uin, media))) fail(RET.NOT_FOUND, 'no such media');
    const blob = await tx.getMediaBlob(media.sha256);
    if (!blob) fail(RET.NOT_FOUND, 'no such media');
    const refusal = checkMediaForType(type, blob.kind);
    if (refusal) fail(refusal.ret, refusal.errMsg);
  }

  /** Inside a send's transaction: its recipients may read the media from now on. */
  recordSend(tx: StoreTx, mediaId: string, fromUin: number, toUin: number, groupId: number): Promise<void> {
    return tx.addMediaSend(mediaId, mediaSendOf(fromUin, toUin, groupId));
  }

  async #mayRead(tx: StoreReader, uin: number, media: MediaRow): Promise<boolean> {
    if (media.uin === uin) return true;
    const sends = await tx.listMediaSends(media.mediaId);
    const groups = new Set<number>();
    for (const send of sends) if (send.groupId && (await tx.getMembers(send.groupId)).includes(uin)) groups.add(send.groupId);
    return mayReadMedia(uin, media.uin, sends, (g) => groups.has(g));
  }

  // ---- expiry ------------------------------------------------------------------------------------------------

  /** Removes uploads untouched for `uploadExpiryMs` (pending ones with their chunks). */
  sweep(): Promise<void> {
    this.#sweeping ??= this.#sweep().finally(() => (this.#sweeping = undefined));
    return this.#sweeping;
  }

  async #sweep(): Promise<void> {
    const now = this.#d.clock.now();
    this.#lastSweep = now;
    try {
      const stale = await this.#d.store.read.listStaleUploads(now - this.#o.uploadExpiryMs, SWEEP_BATCH);
      for (const up of stale) {
        if (this.#completing.has(`${up.uin}:${up.uploadId}`)) continue;
        const isDeleted = await this.#d.run(async (tx) => {
          const current = await tx.getUpload(up.uploadId);
          if (!current || current.updateTime !== up.updateTime) return false; // touched meanwhile: resumed
          await tx.deleteUpload(up.uploadId);
          return true;
        });
        if (isDeleted && up.state === 'pending') {
          await this.#o.blobs.deletePrefix(chunkPrefix(up.uploadId));
          // A complete that crashed mid-way left the upload pending and its scratch copies behind.
          await this.#o.blobs.deletePrefix(scratchPrefix(up.uploadId));
        }
      }
    } catch (err) {
      this.#d.logger.warn({ err }, 'media sweep failed');
    }
  }
}
