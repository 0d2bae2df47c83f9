/**
 * Serves the built web client (web/dist, see docs/web.md) at `/` with @fastify/static: hashed assets under
 * `/assets/` are immutable, `index.html` is revalidated on every load so a new build is picked up at once. When
 * the folder has no `index.html` (the client was not built), `/` answers a short HTML page saying how to build
 * it instead of a JSON 404. API routes are registered before and win over the static wildcard. `/admin` serves the
 * admin dashboard's page (`admin.html`, docs/operations.md "Dashboard"): the page is public like the app, its data
 * route (`/api/admin/stats`) is not.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

/** Options of the web client routes. */
export interface StaticRoutesOptions {
  /** Absolute path of the built web client (the folder holding index.html). */
  rootDir: string;
}

/** Unstyled on purpose: the Content-Security-Policy (browser-headers.ts) refuses inline styles. */
const NOT_BUILT_PAGE = `<!doctype html><meta charset="utf-8"><title>Synchat</title>
<body>
<h1>Synchat</h1><p>The web client is not built. Run <code>npm run build:web</code> (or <code>npm start</code>, which builds it when missing) and reload.</p></body>`;

/** Registers the web client routes on `app`. */
export function registerStaticRoutes(app: FastifyInstance, opts: StaticRoutesOptions): void {
  if (!existsSync(join(opts.rootDir, 'index.html'))) {
    for (const page of ['/', '/admin']) {
      app.get(page, (_req, reply) => {
        reply.code(503).header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-store').send(NOT_BUILT_PAGE);
      });
    }
    return;
  }
  // Revalidated on every load like index.html (setHeaders below), so a new build's assets are picked up at once.
  app.get('/admin', (_req, reply) => reply.sendFile('admin.html'));
  void app.register(fastifyStatic, {
    root: opts.rootDir,
    prefix: '/',
    index: ['index.html'],
    // Only files that exist are served; anything else falls through to the JSON not-found handler.
    wildcard: true,
    cacheControl: false,
    setHeaders(res, path) {
      // Vite names every asset by its content hash; index.html names the current ones.
      if (/[/\\]assets[/\\]/.test(path)) res.setHeader('cache-control', 'public, max-age=31536000, immutable');
      else res.setHeader('cache-control', 'no-cache');
    },
  });
}
