/**
 * The client's address behind a TLS-terminating proxy (`SYNCHAT_TRUST_PROXY`, docs/deploy.md): one rule for every
 * edge that reads a request — Fastify's `req.ip` (API calls, long-poll, media) is given the same compiled trust
 * function, and the `/ws` upgrade calls {@link clientAddress}. Both run @fastify/proxy-addr, Fastify's own
 * X-Forwarded-For walk, so they cannot disagree. Every per-address limit (login throttles, connection caps) sees
 * this address. The raw TCP port has no headers: behind a TCP proxy its connections show the proxy's address.
 */
import type { IncomingMessage } from 'node:http';
import proxyAddr from '@fastify/proxy-addr';

/** Whether the hop at `address` (hop 0 = the socket's peer) is a trusted proxy. */
export type TrustProxy = (address: string, hop: number) => boolean;

const TRUST_NONE: TrustProxy = () => false;

/**
 * Compiles `SYNCHAT_TRUST_PROXY` (comma list of addresses, CIDRs, or `loopback`/`linklocal`/`uniquelocal`);
 * '' trusts no one, so X-Forwarded-For is ignored. Throws a TypeError naming a bad entry.
 */
export function compileTrustProxy(list: string): TrustProxy {
  const entries = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  return entries.length === 0 ? TRUST_NONE : proxyAddr.compile(entries);
}

/**
 * The client's address of a request: the socket's peer, or — while that peer and each hop before it are trusted
 * proxies — the next address leftwards in X-Forwarded-For. An untrusted peer's header is ignored.
 */
export function clientAddress(req: IncomingMessage, trust: TrustProxy): string {
  // A socket already gone has no address: '' then, as the edges had before.
  return proxyAddr(req, trust) ?? '';
}
