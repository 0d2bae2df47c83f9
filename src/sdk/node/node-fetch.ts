/**
 * A `fetch` for Node that trusts extra certificates: Node's global fetch takes no CA, so a client of a server with
 * a self-signed (`npm run dev-cert`) or private-CA certificate passes this one as `ClientOptions.fetch`. Built on
 * node:https; answers are real `Response`s. Node only.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import type { FetchLike } from '../http.ts';
import { trustedRoots, type TrustedCa } from './tcp-link.ts';

/** Options of {@link nodeFetch}. */
export interface NodeFetchOptions {
  /** PEM certificates trusted for `https://` besides Node's bundled roots. @default Node's roots only */
  ca?: TrustedCa;
}

async function bodyBytes(body: RequestInit['body']): Promise<Uint8Array | string | undefined> {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string' || body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (typeof Blob !== 'undefined' && body instanceof Blob) return new Uint8Array(await body.arrayBuffer());
  throw new TypeError('nodeFetch: body must be a string, bytes or a Blob');
}

/**
 * A {@link FetchLike} over node:http / node:https. Network failures reject with a TypeError whose `cause` is the
 * socket error (its `code`, as the global fetch's), so the SDK's failover tells "never sent" apart the same way;
 * an abort rejects with the signal's reason.
 */
export function nodeFetch(options: NodeFetchOptions = {}): FetchLike {
  const ca = options.ca ? trustedRoots(options.ca) : undefined;
  return async (input, init = {}) => {
    const url = new URL(input);
    const body = await bodyBytes(init.body);
    const headers = new Headers(init.headers);
    const signal = init.signal ?? undefined;
    signal?.throwIfAborted();
    const isHttps = url.protocol === 'https:';
    return new Promise<Response>((resolve, reject) => {
      const req = (isHttps ? httpsRequest : httpRequest)(url, {
        method: init.method ?? 'GET',
        headers: Object.fromEntries(headers),
        ...(isHttps ? { minVersion: 'TLSv1.2' as const, ...(ca ? { ca } : {}) } : {}),
      });
      const onAbort = () => req.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err) => {
        signal?.removeEventListener('abort', onAbort);
        reject(signal?.aborted ? signal.reason : new TypeError('fetch failed', { cause: err }));
      });
      req.on('response', (res: IncomingMessage) => {
        res.on('end', () => signal?.removeEventListener('abort', onAbort));
        const answerHeaders = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) answerHeaders.append(name, v);
        }
        const isEmpty = res.statusCode === 204 || res.statusCode === 304 || init.method === 'HEAD';
        if (isEmpty) res.resume();
        resolve(new Response(isEmpty ? null : (Readable.toWeb(res) as ReadableStream), { status: res.statusCode ?? 0, headers: answerHeaders }));
      });
      req.end(body);
    });
  };
}
