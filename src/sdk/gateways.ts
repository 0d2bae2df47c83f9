/**
 * The gateway directory of one client: the gateways it knows (`GET /api/gateways`, or a fixed list), which of them
 * failed recently, and the picks that spread clients over the live nodes and move them off dead ones
 * (docs/sdk.md "Several nodes"; PROTOCOL.md "Several nodes": `/api/gateways` on any node lists every live node's
 * gateways, a dead node's disappear within 30 s).
 */
import type { HttpFailover } from './http.ts';
import type { Gateway, TransportName } from './types.ts';

const TRANSPORTS: ReadonlySet<string> = new Set<TransportName>(['tcp', 'ws', 'http']);

/** Options of {@link GatewayDirectory}. */
export interface GatewayDirectoryOptions {
  /** A fixed list (`ClientOptions.gateways`): used as given, never replaced by {@link GatewayDirectory.replace}. */
  gateways?: readonly Gateway[];
  /** HTTP base URLs known before any directory (the client's `baseUrl` and `bootstrapUrls`); always candidates. */
  httpUrls: readonly string[];
  /** How long a gateway that failed is avoided, in ms. @default 30000 */
  failedGatewayMs?: number;
  /** Age after which the list is asked for again, in ms. @default 60000 */
  refreshMs?: number;
  /** Random source in [0, 1). @default Math.random */
  random?: () => number;
  /** Clock in ms. @default Date.now */
  now?: () => number;
}

/** `http://host:port/` and `http://host:port` are one base URL. */
export function normalizeUrl(url: string): string {
  return url.replace(/\/+$/, '');
}

/**
 * What one client knows about the service's gateways. A gateway that failed (connect error, close, timeout, ret
 * 1102) is remembered for `failedGatewayMs`: picks avoid it while any other gateway of its transport is left, and
 * the list counts as stale, so the next connect asks `/api/gateways` again. As the {@link HttpFailover} of the
 * client's {@link HttpClient} it names the next HTTP base URL when one fails.
 */
export class GatewayDirectory implements HttpFailover {
  readonly #isFixed: boolean;
  readonly #seedHttp: readonly string[];
  readonly #failedGatewayMs: number;
  readonly #refreshMs: number;
  readonly #random: () => number;
  readonly #now: () => number;
  #list: Gateway[];
  /** url → when it last failed. Bounded by the gateways seen within `failedGatewayMs` (older ones are pruned). */
  readonly #failedAt = new Map<string, number>();
  #fetchedAt = -Infinity;
  #isStale = true;

  constructor(options: GatewayDirectoryOptions) {
    this.#isFixed = options.gateways !== undefined;
    this.#list = cleanList(options.gateways ?? []);
    this.#seedHttp = options.httpUrls.map(normalizeUrl);
    this.#failedGatewayMs = options.failedGatewayMs ?? 30_000;
    this.#refreshMs = options.refreshMs ?? 60_000;
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? Date.now;
  }

  /** True when the list was given (`ClientOptions.gateways`) and is never asked for. */
  get isFixed(): boolean {
    return this.#isFixed;
  }

  /** The known gateways (copies), in the order the server listed them. */
  get gateways(): Gateway[] {
    return this.#list.map((g) => ({ ...g }));
  }

  /** True when the list should be asked for: never fetched, older than `refreshMs`, or a gateway failed since. */
  get needsRefresh(): boolean {
    return !this.#isFixed && (this.#isStale || this.#now() - this.#fetchedAt >= this.#refreshMs);
  }

  /** Takes a fresh list (the `gateways` of a `/api/gateways` answer); entries that are not gateways are dropped. */
  replace(gateways: unknown): void {
    if (this.#isFixed || !Array.isArray(gateways)) return;
    this.#list = cleanList(gateways);
    this.#fetchedAt = this.#now();
    this.#isStale = false;
  }

  /** Remembers that `url` failed now; picks avoid it for `failedGatewayMs` and the list is asked for again. */
  markFailed(url: string): void {
    this.#failedAt.set(normalizeUrl(url), this.#now());
    this.#isStale = true;
  }

  /** Forgets a failure of `url` (it just worked). */
  markWorking(url: string): void {
    this.#failedAt.delete(normalizeUrl(url));
  }

  /** True while `url` failed within the last `failedGatewayMs`. */
  isFailed(url: string): boolean {
    return this.#failedSince(normalizeUrl(url)) !== undefined;
  }

  /**
   * The URLs of `transport` in the order to try them: the live ones shuffled (so clients spread over the nodes),
   * or, when every one failed recently, those, the longest-failed first (a restarted single server must still be
   * found; the caller's backoff spaces the attempts). For `http` the seed base URLs count too.
   */
  candidates(transport: TransportName): string[] {
    const urls = this.#urlsOf(transport);
    const live = urls.filter((u) => this.#failedSince(u) === undefined);
    if (live.length > 0) return this.#shuffle(live);
    return urls.sort((a, b) => this.#failedSince(a)! - this.#failedSince(b)!);
  }

  /** A live URL of `transport`, picked at random; undefined when there is none. */
  pick(transport: TransportName): string | undefined {
    const live = this.#urlsOf(transport).filter((u) => this.#failedSince(u) === undefined);
    return live.length ? live[Math.floor(this.#random() * live.length)] : undefined;
  }

  /** {@link HttpFailover}: a live HTTP base URL this request has not tried, picked at random. */
  next(tried: ReadonlySet<string>): string | undefined {
    const left = this.#urlsOf('http').filter((u) => !tried.has(u) && this.#failedSince(u) === undefined);
    return left.length ? left[Math.floor(this.#random() * left.length)] : undefined;
  }

  #urlsOf(transport: TransportName): string[] {
    const urls = this.#list.filter((g) => g.transport === transport).map((g) => g.url);
    if (transport === 'http') urls.push(...this.#seedHttp);
    return [...new Set(urls)];
  }

  /** When `url` failed, if within `failedGatewayMs`; prunes an older record. */
  #failedSince(url: string): number | undefined {
    const at = this.#failedAt.get(url);
    if (at === undefined) return undefined;
    if (this.#now() - at < this.#failedGatewayMs) return at;
    this.#failedAt.delete(url);
    return undefined;
  }

  /** Fisher–Yates. */
  #shuffle(urls: string[]): string[] {
    for (let i = urls.length - 1; i > 0; i--) {
      const j = Math.floor(this.#random() * (i + 1));
      [urls[i], urls[j]] = [urls[j]!, urls[i]!];
    }
    return urls;
  }
}

/** Well-formed entries only, URLs normalized (a server of another version may list transports we do not know). */
function cleanList(gateways: readonly unknown[]): Gateway[] {
  const out: Gateway[] = [];
  for (const g of gateways as { transport?: unknown; url?: unknown }[]) {
    if (typeof g?.url === 'string' && typeof g.transport === 'string' && TRANSPORTS.has(g.transport)) {
      out.push({ transport: g.transport as TransportName, url: normalizeUrl(g.url) });
    }
  }
  return out;
}
