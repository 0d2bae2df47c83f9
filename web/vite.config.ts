/**
 * Vite build of the Synchat web client (docs/web.md): Preact with the automatic JSX runtime through esbuild (no
 * plugin needed), output in web/dist, which the server serves at `/` (src/transports/http/static-routes.ts). Two
 * pages: the chat app (index.html) and the admin dashboard (admin.html, served at `/admin`).
 * `npm run dev:web` proxies the API and `/ws` to a server on 127.0.0.1:8080.
 */
import { join } from 'node:path';
import { defineConfig } from 'vite';

export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    chunkSizeWarningLimit: 600,
    rollupOptions: { input: { main: join(import.meta.dirname, 'index.html'), admin: join(import.meta.dirname, 'admin.html') } },
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8080',
      '/ws': { target: 'ws://127.0.0.1:8080', ws: true },
    },
  },
});
