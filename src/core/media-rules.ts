/**
 * Pure media rules (PROTOCOL.md "HTTP" media rows): chunk arithmetic, upload limits, type detection from magic
 * numbers, who may read a media object, and safe file names. No I/O: the service feeds bytes and rows in.
 * See docs/protocol.md "Media".
 */
import { MSG_TYPE, RET, type Ret } from '../protocol/index.ts';

/** An expected refusal. */
export interface MediaRefusal {
  ret: Ret;
  errMsg: string;
}

/** Smallest and largest chunk a client may choose, in bytes. The last chunk of a file may be shorter. */
export const MIN_CHUNK_BYTES = 64 * 1024; // 64 KiB
/** Largest chunk a client may choose, in bytes; the HTTP PUT body limit follows it. */
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024; // 16 MiB
/** Largest number of chunks in one upload (bounds the `missing` list). */
export const MAX_CHUNKS = 10_000;
/** Images with more pixels than this are refused (a decompression bomb costs memory, not bytes). */
export const MAX_IMAGE_PIXELS = 50_000_000;
/** Thumbnails fit inside this square, in pixels. */
export const THUMB_MAX_PX = 320;
/** How many bytes of the start of a file {@link detectType} needs. */
export const SNIFF_BYTES = 64;

/** What kind of thing the bytes are. */
export type MediaKind = 'image' | 'voice' | 'file';

/** The result of sniffing the first bytes of a file. */
export interface DetectedType {
  kind: MediaKind;
  /** The MIME type the bytes are, by their magic number; `application/octet-stream` when unknown. */
  mime: string;
}

/** Number of chunks of a file of `size` bytes cut into `chunkSize` pieces (an empty file has none). */
export function chunkCount(size: number, chunkSize: number): number {
  return Math.ceil(size / chunkSize);
}

/** Exact length chunk `index` must have: `chunkSize`, except the last one. */
export function chunkLength(size: number, chunkSize: number, index: number): number {
  const count = chunkCount(size, chunkSize);
  if (index < 0 || index >= count) return -1;
  return index === count - 1 ? size - chunkSize * (count - 1) : chunkSize;
}

/** Indices in `[0, count)` not in `present`, ascending. */
export function missingChunks(count: number, present: Iterable<number>): number[] {
  const have = new Set(present);
  const out: number[] = [];
  for (let i = 0; i < count; i++) if (!have.has(i)) out.push(i);
  return out;
}

/** Limits of uploads, from the server configuration. */
export interface MediaLimits {
  /** Largest file, in bytes. */
  maxFileBytes: number;
  /** Bytes one user may upload per rolling 24 hours (instant, de-duplicated uploads excepted). */
  maxDailyBytes: number;
}

/** Checks a new upload's size and chunking against the limits; `usedTodayBytes` counts the user's last 24 h. */
export function checkUploadInit(
  req: { size: number; chunkSize: number },
  limits: MediaLimits,
  usedTodayBytes: number,
): MediaRefusal | undefined {
  if (req.size < 1) return { ret: RET.BAD_REQUEST, errMsg: 'size: an empty file cannot be uploaded' };
  if (req.size > limits.maxFileBytes) {
    return { ret: RET.TOO_LARGE, errMsg: `size: ${req.size} bytes exceeds the limit of ${limits.maxFileBytes} bytes per file` };
  }
  if (req.chunkSize < MIN_CHUNK_BYTES || req.chunkSize > MAX_CHUNK_BYTES) {
    return { ret: RET.BAD_REQUEST, errMsg: `chunkSize: must be between ${MIN_CHUNK_BYTES} and ${MAX_CHUNK_BYTES} bytes` };
  }
  if (chunkCount(req.size, req.chunkSize) > MAX_CHUNKS) {
    return { ret: RET.BAD_REQUEST, errMsg: `chunkSize: too small for this size (at most ${MAX_CHUNKS} chunks)` };
  }
  if (usedTodayBytes + req.size > limits.maxDailyBytes) {
    return { ret: RET.TOO_LARGE, errMsg: `daily upload limit of ${limits.maxDailyBytes} bytes reached; try again later` };
  }
  return undefined;
}

function startsWith(b: Uint8Array, sig: readonly number[], at = 0): boolean {
  if (b.length < at + sig.length) return false;
  for (let i = 0; i < sig.length; i++) if (b[at + i] !== sig[i]) return false;
  return true;
}

function ascii(b: Uint8Array, text: string, at = 0): boolean {
  return startsWith(b, [...text].map((c) => c.charCodeAt(0)), at);
}

/**
 * Detects the type from the first bytes (at least {@link SNIFF_BYTES} when the file is that long), never from
 * what the client claims. Images are those the image library decodes: JPEG, PNG, GIF, WebP, AVIF. Voice covers
 * what browsers record: WebM/Matroska (Opus), Ogg, MP4 audio (`M4A `), MP3, WAV. Anything else is a file.
 */
export function detectType(head: Uint8Array): DetectedType {
  if (startsWith(head, [0xff, 0xd8, 0xff])) return { kind: 'image', mime: 'image/jpeg' };
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return { kind: 'image', mime: 'image/png' };
  if (ascii(head, 'GIF87a') || ascii(head, 'GIF89a')) return { kind: 'image', mime: 'image/gif' };
  if (ascii(head, 'RIFF') && ascii(head, 'WEBP', 8)) return { kind: 'image', mime: 'image/webp' };
  if (ascii(head, 'ftyp', 4)) {
    const brand = String.fromCharCode(...head.subarray(8, 12));
    if (brand === 'avif' || brand === 'avis') return { kind: 'image', mime: 'image/avif' };
    if (brand === 'M4A ') return { kind: 'voice', mime: 'audio/mp4' };
  }
  if (startsWith(head, [0x1a, 0x45, 0xdf, 0xa3])) return { kind: 'voice', mime: 'audio/webm' };
  if (ascii(head, 'OggS')) return { kind: 'voice', mime: 'audio/ogg' };
  if (ascii(head, 'RIFF') && ascii(head, 'WAVE', 8)) return { kind: 'voice', mime: 'audio/wav' };
  if (ascii(head, 'ID3') || (head.length >= 2 && head[0] === 0xff && (head[1]! & 0xe0) === 0xe0)) {
    return { kind: 'voice', mime: 'audio/mpeg' };
  }
  return { kind: 'file', mime: 'application/octet-stream' };
}

/**
 * Checks the detected type against what the client declared at init: a declared `image/*` or `audio/*` must be
 * one. A declared generic type (`application/octet-stream`, ...) accepts anything, which is then a file.
 */
export function checkDeclaredType(declaredMime: string, detected: DetectedType): MediaRefusal | undefined {
  const declared = declaredMime.toLowerCase();
  if (declared.startsWith('image/') && detected.kind !== 'image') {
    return { ret: RET.BAD_REQUEST, errMsg: `declared ${declaredMime} but the bytes are not an image this server can read` };
  }
  if (declared.startsWith('audio/') && detected.kind !== 'voice') {
    return { ret: RET.BAD_REQUEST, errMsg: `declared ${declaredMime} but the bytes are not a recognised audio format` };
  }
  return undefined;
}

/** Checks that a message of `type` may carry media of `kind`: images need an image, voice needs audio. */
export function checkMediaForType(type: number, kind: MediaKind): MediaRefusal | undefined {
  if (type === MSG_TYPE.IMAGE && kind !== 'image') return { ret: RET.BAD_REQUEST, errMsg: 'type 3 (image) needs media that is an image' };
  if (type === MSG_TYPE.VOICE && kind !== 'voice') return { ret: RET.BAD_REQUEST, errMsg: 'type 34 (voice) needs media that is audio' };
  return undefined;
}

/** One conversation a media object was sent in: a group, or the two users of a direct chat. */
export interface MediaSend {
  /** Group number, or 0 for a direct chat. */
  groupId: number;
  /** Direct chat: the two users (equal for a chat with oneself). 0 for a group. */
  uinA: number;
  uinB: number;
}

/**
 * Who may read (and send on) a media object: its uploader, and every current member of a conversation where
 * it was sent. `isMember(groupId)` answers for the reader.
 */
export function mayReadMedia(
  readerUin: number,
  uploaderUin: number,
  sends: readonly MediaSend[],
  isMember: (groupId: number) => boolean,
): boolean {
  if (readerUin === uploaderUin) return true;
  for (const s of sends) {
    if (s.groupId === 0 ? s.uinA === readerUin || s.uinB === readerUin : isMember(s.groupId)) return true;
  }
  return false;
}

/** The conversation record for a send from `fromUin` to a direct peer or a group. */
export function mediaSendOf(fromUin: number, toUin: number, groupId: number): MediaSend {
  if (groupId) return { groupId, uinA: 0, uinB: 0 };
  return { groupId: 0, uinA: Math.min(fromUin, toUin), uinB: Math.max(fromUin, toUin) };
}

/**
 * A file name safe to store and show: no path, no control or bidi-override characters, at most 255 UTF-16
 * units; blank or dot-only names become `file`.
 */
export function safeFileName(name: string | undefined): string {
  // eslint-disable-next-line no-control-regex
  let s = (name ?? '').replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, '');
  s = s.split(/[/\\]/).pop()!.trim();
  if (s.length > 255) s = s.slice(0, 255);
  return /^\.*$/.test(s) ? 'file' : s;
}

/**
 * A `Content-Disposition` header value (RFC 6266): an ASCII fallback `filename` with quotes, backslashes and
 * non-ASCII replaced, and the exact name as RFC 5987 `filename*`.
 */
export function contentDisposition(disposition: 'inline' | 'attachment', name: string): string {
  const fallback = safeFileName(name).replace(/[^\x20-\x7e]|["\\%;]/g, '_');
  const encoded = encodeURIComponent(safeFileName(name)).replace(/['()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  return `${disposition}; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}
