/**
 * Browser security headers on every HTTP answer (web app, API, media), set once with @fastify/helmet; see
 * docs/security.md. The web app (web/, docs/web.md) loads only its own hashed script and stylesheet, talks to its
 * own origin (fetch and the `/ws` WebSocket), and shows images and plays voice from `blob:` URLs it makes of media
 * it fetched with its bearer. Media answers replace the policy with a sandbox of their own (media-routes.ts), so a
 * stored file never runs as a page of this origin.
 */
import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';

/**
 * The Content-Security-Policy directives of every answer. `connect-src 'self'` covers `ws:`/`wss:` to this origin
 * (CSP Level 3). No `upgrade-insecure-requests`: a server without TLS (development, TLS at a proxy it cannot see)
 * would have its page ask for `https:` subresources it does not serve.
 */
export const CSP_DIRECTIVES: Readonly<Record<string, readonly string[]>> = {
  'default-src': ["'self'"],
  'script-src': ["'self'"],
  'style-src': ["'self'"],
  'img-src': ["'self'", 'blob:'],
  'media-src': ["'self'", 'blob:'],
  'connect-src': ["'self'"],
  'font-src': ["'self'"],
  'object-src': ["'none'"],
  'base-uri': ["'none'"],
  'form-action': ["'self'"],
  'frame-ancestors': ["'none'"],
};

/** HSTS max-age when the server itself serves TLS: 180 days. */
const HSTS_MAX_AGE_SEC = 180 * 24 * 60 * 60;

/**
 * Registers the headers on `app`: the CSP above, `Referrer-Policy: no-referrer`, `X-Content-Type-Options:
 * nosniff`, `X-Frame-Options: DENY`, same-origin COOP/CORP, and HSTS only when `isTls` (behind a TLS proxy the
 * proxy sends it: docs/deploy.md).
 */
export function registerBrowserHeaders(app: FastifyInstance, opts: { isTls: boolean }): void {
  void app.register(helmet, {
    contentSecurityPolicy: { useDefaults: false, directives: CSP_DIRECTIVES as Record<string, string[]> },
    referrerPolicy: { policy: 'no-referrer' },
    xFrameOptions: { action: 'deny' },
    strictTransportSecurity: opts.isTls ? { maxAge: HSTS_MAX_AGE_SEC, includeSubDomains: false } : false,
  });
}
