/**
 * Media for SDK users (Node and browser): `sendImage`, `sendVoice`, `sendFile`. A file is hashed (SHA-256,
 * WebCrypto), announced with `media/init`, cut into chunks that are PUT in parallel (bounded concurrency, each
 * retried), completed, then sent as an ordinary message. An interrupted upload resumes: `init` with the same
 * content answers only the chunks still `missing`. Standalone: it needs a base URL, a session, `fetch` and a
 * `sendmsg` function, so it works beside any client. See docs/protocol.md "Media".
 */
import { MSG_TYPE } from '../protocol/index.ts';

/** The fetch this module needs (the global one by default). */
export type MediaFetch = (input: string, init?: RequestInit) => Promise<Response>;

/** What `sendmsg` answers (the subset this module passes through). */
export interface MediaSendAnswer {
  msgId: string;
  seq: number;
  createTime: number;
  duplicate?: boolean;
}

/** Options of {@link MediaClient}. */
export interface MediaClientOptions {
  /**
   * Server origin, e.g. `http://127.0.0.1:8080`, or a function that returns the current one (the SDK client's,
   * which moves to another node when one fails).
   */
  baseUrl: string | (() => string);
  /** The session's bearer token, or a function that returns the current one. */
  sid: string | (() => string);
  /** @default globalThis.fetch */
  fetch?: MediaFetch;
  /** Sends the message once the media is stored (the SDK client's sendmsg). */
  sendmsg(to: string, type: number, content: string, mediaId: string): Promise<MediaSendAnswer>;
  /** Chunks in flight at once. @default 4 */
  concurrency?: number;
  /** Bytes per chunk (64 KiB–16 MiB). @default 1048576 (1 MiB) */
  chunkSize?: number;
  /** Attempts per chunk before the upload fails (network errors and ret 9 are retried). @default 3 */
  attempts?: number;
}

/** Progress of one upload. */
export interface UploadProgress {
  /** Bytes the server holds (chunks already there from an earlier attempt count). */
  sentBytes: number;
  totalBytes: number;
  chunksDone: number;
  chunksTotal: number;
}

/** Options of one upload. */
export interface UploadOptions {
  /** MIME type to declare; the server checks it against the bytes (`image/*` must be an image). */
  mime?: string;
  /** Original file name (kept for files, served in Content-Disposition). */
  name?: string;
  onProgress?(p: UploadProgress): void;
  /** Stops the upload; chunks already sent stay, so a later upload of the same bytes resumes. */
  signal?: AbortSignal;
  concurrency?: number;
  chunkSize?: number;
}

/** A stored media object. */
export interface UploadResult {
  mediaId: string;
  /** `image`, `voice` or `file`, as the server detected it. */
  kind?: string;
  mime?: string;
  size?: number;
  width?: number;
  height?: number;
  /** True when the server already held this content for this user (no chunk was sent). */
  isInstant: boolean;
}

/** A refusal from the server (`ret`, `errMsg`), or a transport failure (`ret` 9). */
export class MediaError extends Error {
  readonly ret: number;
  readonly errMsg: string;
  constructor(ret: number, errMsg: string) {
    super(`media: ${errMsg} (ret ${ret})`);
    this.ret = ret;
    this.errMsg = errMsg;
  }
}

type Bytes = Uint8Array | Blob;

async function toBytes(data: Bytes): Promise<Uint8Array> {
  return data instanceof Uint8Array ? data : new Uint8Array(await data.arrayBuffer());
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  let hex = '';
  for (const b of digest) hex += b.toString(16).padStart(2, '0');
  return hex;
}

/** Uploads media and sends media messages. */
export class MediaClient {
  readonly #o: MediaClientOptions;
  readonly #fetch: MediaFetch;

  constructor(options: MediaClientOptions) {
    this.#o = options;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  #sid(): string {
    return typeof this.#o.sid === 'function' ? this.#o.sid() : this.#o.sid;
  }

  async #call(method: string, path: string, body: BodyInit | undefined, contentType: string, signal?: AbortSignal): Promise<any> {
    let res: Response;
    try {
      const baseUrl = typeof this.#o.baseUrl === 'function' ? this.#o.baseUrl() : this.#o.baseUrl;
      res = await this.#fetch(baseUrl + path, {
        method,
        headers: { authorization: `Bearer ${this.#sid()}`, 'content-type': contentType },
        body,
        signal,
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new MediaError(9, `network error: ${(err as Error).message}`);
    }
    let answer: any;
    try {
      answer = await res.json();
    } catch {
      throw new MediaError(9, `HTTP ${res.status} without a JSON answer`);
    }
    if (answer?.ret !== 0) throw new MediaError(Number(answer?.ret ?? 9), String(answer?.errMsg ?? `HTTP ${res.status}`));
    return answer;
  }

  /** Uploads bytes (resuming or instant when possible) and answers the media id. */
  async upload(data: Bytes, opts: UploadOptions = {}): Promise<UploadResult> {
    const bytes = await toBytes(data);
    const sha256 = await sha256Hex(bytes);
    const mime = opts.mime ?? ((data as Blob).type || 'application/octet-stream');
    const wantChunk = opts.chunkSize ?? this.#o.chunkSize ?? 1024 * 1024;
    const init = await this.#call(
      'POST',
      '/api/media/init',
      JSON.stringify({ size: bytes.length, sha256, mime, chunkSize: wantChunk, ...(opts.name !== undefined ? { name: opts.name } : {}) }),
      'application/json',
      opts.signal,
    );
    // A resumed upload keeps the chunk size it started with.
    const chunkSize: number = init.chunkSize ?? wantChunk;
    const total = Math.ceil(bytes.length / chunkSize);
    const missing: number[] = init.missing;
    if (init.mediaId && missing.length === 0) {
      opts.onProgress?.({ sentBytes: bytes.length, totalBytes: bytes.length, chunksDone: total, chunksTotal: total });
      return { mediaId: init.mediaId, isInstant: true };
    }
    const lengthOf = (i: number) => Math.min(chunkSize, bytes.length - i * chunkSize);
    let sentBytes = bytes.length - missing.reduce((n, i) => n + lengthOf(i), 0);
    let chunksDone = total - missing.length;
    opts.onProgress?.({ sentBytes, totalBytes: bytes.length, chunksDone, chunksTotal: total });

    const queue = [...missing];
    const attempts = Math.max(1, this.#o.attempts ?? 3);
    const worker = async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        const chunk = bytes.subarray(i * chunkSize, i * chunkSize + lengthOf(i));
        for (let attempt = 1; ; attempt++) {
          try {
            await this.#call('PUT', `/api/media/${init.uploadId}/${i}`, chunk as Uint8Array<ArrayBuffer>, 'application/octet-stream', opts.signal);
            break;
          } catch (err) {
            const isRetryable = err instanceof MediaError && err.ret === 9;
            if (!isRetryable || attempt >= attempts) throw err;
            await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
          }
        }
        sentBytes += chunk.length;
        chunksDone++;
        opts.onProgress?.({ sentBytes, totalBytes: bytes.length, chunksDone, chunksTotal: total });
      }
    };
    const concurrency = Math.max(1, opts.concurrency ?? this.#o.concurrency ?? 4);
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
    const done = await this.#call('POST', `/api/media/${init.uploadId}/complete`, '{}', 'application/json', opts.signal);
    return {
      mediaId: done.mediaId,
      kind: done.kind,
      mime: done.mime,
      size: done.size,
      width: done.width,
      height: done.height,
      isInstant: false,
    };
  }

  /** Uploads an image and sends it (type 3); `content` is free (a caption, or empty). */
  async sendImage(to: string, data: Bytes, opts: UploadOptions & { content?: string } = {}): Promise<MediaSendAnswer & UploadResult> {
    const media = await this.upload(data, { ...opts, mime: opts.mime ?? ((data as Blob).type || 'image/*') });
    return { ...media, ...(await this.#o.sendmsg(to, MSG_TYPE.IMAGE, opts.content ?? '', media.mediaId)) };
  }

  /** Uploads a voice note (WebM/Opus from browsers, Ogg, MP4 audio) and sends it (type 34, content = duration in ms). */
  async sendVoice(to: string, data: Bytes, durationMs: number, opts: UploadOptions = {}): Promise<MediaSendAnswer & UploadResult> {
    const media = await this.upload(data, { ...opts, mime: opts.mime ?? ((data as Blob).type || 'audio/webm') });
    return { ...media, ...(await this.#o.sendmsg(to, MSG_TYPE.VOICE, String(Math.max(0, Math.round(durationMs))), media.mediaId)) };
  }

  /** Uploads a file under its name and sends it (type 49, content = the name). */
  async sendFile(to: string, data: Bytes, name: string, opts: UploadOptions = {}): Promise<MediaSendAnswer & UploadResult> {
    const media = await this.upload(data, { ...opts, name, mime: opts.mime ?? 'application/octet-stream' });
    return { ...media, ...(await this.#o.sendmsg(to, MSG_TYPE.FILE, name, media.mediaId)) };
  }
}
