/**
 * The HTTP side of the client: JSON calls with the bearer token, the long-poll `synccheck`, and raw requests for
 * the media module (chunk uploads). Uses the global `fetch` (browsers, Node ≥ 18) or an injected one.
 */
import { CALLS, isCallPath } from '../protocol/index.ts';

/** A `fetch` function (global or injected). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** An HTTP answer: status and parsed JSON body (`{ret: 9}` with the text as errMsg when the body is not JSON). */
export interface HttpAnswer {
  status: number;
  body: any;
  headers: Headers;
}

/** Options of one raw request. */
export interface HttpRequestOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'HEAD';
  /** A JSON value (sent as application/json) or raw bytes (application/octet-stream). */
  body?: unknown;
  /** Extra headers. */
  headers?: Record<string, string>;
  /** Query parameters for GET. */
  query?: Record<string, string | number | undefined>;
  /** Send `Authorization: Bearer <sid>` when a sid is known. @default true */
  isAuthed?: boolean;
  signal?: AbortSignal;
  /** Give up (reject with an AbortError) after this many ms. @default the client's timeoutMs */
  timeoutMs?: number;
}

/** JSON over HTTP against one base URL. */
export class HttpClient {
  readonly baseUrl: string;
  sid: string | undefined;
  /** Default request timeout in ms: a request through a dead network must not hang forever. @default 30000 */
  timeoutMs: number;
  readonly #fetch: FetchLike;

  constructor(baseUrl: string, fetchImpl?: FetchLike, timeoutMs = 30_000) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.timeoutMs = timeoutMs;
    const f = fetchImpl ?? (globalThis as { fetch?: FetchLike }).fetch;
    if (!f) throw new Error('HttpClient: no global fetch; pass one');
    this.#fetch = f.bind(globalThis) as FetchLike;
  }

  /** Calls an API path with its method from the protocol's table (POST for unknown paths); resolves with the body. */
  async call(path: string, body?: unknown, signal?: AbortSignal): Promise<any> {
    const method = isCallPath(path) ? CALLS[path].method : 'POST';
    const r = await this.request(path, method === 'GET' ? { method, query: body as any, signal } : { method, body: body ?? {}, signal });
    return r.body;
  }

  /** Long-poll `GET /api/synccheck`; resolves with `{ret, selector, syncKey, epoch}`. */
  async synccheck(syncKey: number, timeoutMs: number, signal?: AbortSignal): Promise<any> {
    // The server answers by timeoutMs; past that plus a grace period the network is dead.
    const limitMs = timeoutMs + Math.min(this.timeoutMs, 10_000);
    return (await this.request('/api/synccheck', { method: 'GET', query: { syncKey, timeout: timeoutMs }, signal, timeoutMs: limitMs })).body;
  }

  /** Any request relative to the base URL. Network failures reject (TypeError / AbortError). */
  async request(path: string, options: HttpRequestOptions = {}): Promise<HttpAnswer> {
    const method = options.method ?? 'POST';
    const headers: Record<string, string> = { ...options.headers };
    if (options.isAuthed !== false && this.sid) headers.authorization = `Bearer ${this.sid}`;
    let url = this.baseUrl + path;
    if (options.query) {
      const q = Object.entries(options.query)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
        .join('&');
      if (q) url += (url.includes('?') ? '&' : '?') + q;
    }
    let body: BodyInit | undefined;
    if (options.body !== undefined && method !== 'GET' && method !== 'HEAD') {
      if (options.body instanceof Uint8Array || options.body instanceof ArrayBuffer || (typeof Blob !== 'undefined' && options.body instanceof Blob)) {
        body = options.body as BodyInit;
        headers['content-type'] ??= 'application/octet-stream';
      } else {
        body = JSON.stringify(options.body);
        headers['content-type'] ??= 'application/json';
      }
    }
    const ac = new AbortController();
    const onAbort = () => ac.abort(options.signal?.reason);
    if (options.signal?.aborted) ac.abort(options.signal.reason);
    else options.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => ac.abort(new Error(`HTTP ${method} ${path}: no answer within ${options.timeoutMs ?? this.timeoutMs} ms`)), options.timeoutMs ?? this.timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await this.#fetch(url, { method, headers, body, signal: ac.signal });
      text = await res.text();
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    }
    let parsed: any;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      parsed = { ret: 9, errMsg: `HTTP ${res.status}: ${text.slice(0, 200)}` };
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }
}
