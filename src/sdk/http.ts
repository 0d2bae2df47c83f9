/**
 * The HTTP side of the client: JSON calls with the bearer token, the long-poll `synccheck`, and raw requests for
 * the media module (chunk uploads). Uses the global `fetch` (browsers, Node ≥ 18) or an injected one. With a
 * {@link HttpFailover} a request that fails at the network level is repeated on another node's base URL when that
 * is safe (docs/sdk.md "Several nodes").
 */
import { CALLS, RET, isCallPath } from '../protocol/index.ts';


/**
 * POST calls that may be repeated after a failure that may have reached the server: reads, and a send, whose repeat
 * the server recognises by its clientMsgId (PROTOCOL.md `sendmsg`: "appends nothing"). GET, HEAD and PUT (media
 * chunks, by index) are repeatable by their method. Other calls are repeated only when the connection was never
 * made (a repeated `groups/create` would make two groups).
 */
const REPEATABLE_POSTS: ReadonlySet<string> = new Set([
  '/api/sendmsg',
  // One pending request per pair, and a block or unblock that changes nothing: their repeats append nothing.
  '/api/contacts/request',
  '/api/contacts/block',
  '/api/contacts/unblock',
  '/api/sync',
  '/api/contacts/list',
  '/api/users/lookup',
  '/api/sessions',
  '/api/history',
  '/api/search',
  '/api/media/info',
]);

/**
 * Connect errors (Node's fetch reports them as `cause.code`): the request never reached a server, so repeating it
 * elsewhere is safe whatever it is. Browsers do not say; there only repeatable requests go again.
 */
const NEVER_SENT_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/** Where a request goes when its base URL fails: the client's gateway directory. */
export interface HttpFailover {
  /** Remembers that `url` failed (network error, or ret 1102). */
  markFailed(url: string): void;
  /** Another base URL to repeat the request on (not one in `tried`), or undefined when none is left. */
  next(tried: ReadonlySet<string>): string | undefined;
}

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

/**
 * JSON over HTTP against one base URL at a time. With a {@link HttpFailover}, a request whose base URL fails at
 * the network level (or answers ret 1102) moves the client to another base URL and, when that is safe, goes again
 * there: GET/HEAD/PUT, the calls in {@link REPEATABLE_POSTS} (a send keeps its clientMsgId, so its repeat is
 * applied once), and any request that never reached a server. Each base URL is tried once per request.
 */
export class HttpClient {
  sid: string | undefined;
  /** Default request timeout in ms: a request through a dead network must not hang forever. @default 30000 */
  timeoutMs: number;
  /** Picks another base URL when this one fails; undefined: requests fail where they are. */
  failover: HttpFailover | undefined;
  readonly #fetch: FetchLike;
  #baseUrl: string;

  constructor(baseUrl: string, fetchImpl?: FetchLike, timeoutMs = 30_000) {
    this.#baseUrl = baseUrl.replace(/\/+$/, '');
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

  /** The base URL requests go to now; it moves when a request fails over to another node. */
  get baseUrl(): string {
    return this.#baseUrl;
  }

  set baseUrl(url: string) {
    this.#baseUrl = url.replace(/\/+$/, '');
  }

  /**
   * Any request relative to the base URL. Network failures reject (TypeError / AbortError) once no other base URL
   * is left to repeat it on (see the class); an abort through `options.signal` rejects at once.
   */
  async request(path: string, options: HttpRequestOptions = {}): Promise<HttpAnswer> {
    const tried = new Set<string>();
    for (;;) {
      const base = this.#baseUrl;
      tried.add(base);
      let answer: HttpAnswer;
      try {
        answer = await this.#requestAt(base, path, options);
      } catch (err) {
        if (options.signal?.aborted || !this.#moveOn(base, tried, isRepeatable(path, options.method) || isNeverSent(err))) throw err;
        continue;
      }
      if (answer.body?.ret === RET.GOING_AWAY && this.#moveOn(base, tried, true)) continue;
      return answer;
    }
  }

  /**
   * `base` failed: records it and moves the client to another base URL (unless another request did already).
   * True when the request should go again, on the new base URL.
   */
  #moveOn(base: string, tried: Set<string>, isSafeToRepeat: boolean): boolean {
    const failover = this.failover;
    if (!failover) return false;
    failover.markFailed(base);
    if (this.#baseUrl === base || tried.has(this.#baseUrl)) {
      const next = failover.next(tried);
      if (next === undefined) return false;
      this.#baseUrl = next;
    }
    return isSafeToRepeat;
  }

  async #requestAt(base: string, path: string, options: HttpRequestOptions): Promise<HttpAnswer> {
    const method = options.method ?? 'POST';
    const headers: Record<string, string> = { ...options.headers };
    if (options.isAuthed !== false && this.sid) headers.authorization = `Bearer ${this.sid}`;
    let url = base + path;
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

function isRepeatable(path: string, method: HttpRequestOptions['method'] = 'POST'): boolean {
  return method !== 'POST' && method !== 'DELETE' ? true : REPEATABLE_POSTS.has(path);
}

function isNeverSent(err: unknown): boolean {
  // An AggregateError (every address of a host name refused) carries the code too, or its parts do.
  const cause = (err as { cause?: { code?: unknown; errors?: { code?: unknown }[] } })?.cause;
  const code = cause?.code ?? cause?.errors?.[0]?.code;
  return typeof code === 'string' && NEVER_SENT_CODES.has(code);
}
