#!/usr/bin/env node
// Builds the web client (web/ → web/dist) with Vite. `--if-stale` (used by `npm start`'s prestart) builds only
// when web/dist/index.html is missing or older than any file under web/src, web/index.html, web/public or the
// SDK/protocol sources it bundles, so a fresh clone works with `npm start` and a warm one starts at once.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const out = join(root, 'web/dist/index.html');

function newest(path) {
  if (!existsSync(path)) return 0;
  const s = statSync(path);
  if (!s.isDirectory()) return s.mtimeMs;
  let t = 0;
  for (const name of readdirSync(path)) t = Math.max(t, newest(join(path, name)));
  return t;
}

if (process.argv.includes('--if-stale') && existsSync(out)) {
  const built = statSync(out).mtimeMs;
  const sources = ['web/src', 'web/public', 'web/index.html', 'web/vite.config.ts', 'src/sdk', 'src/protocol'].map((p) => newest(join(root, p)));
  if (Math.max(...sources) <= built) process.exit(0);
}
if (!existsSync(join(root, 'node_modules/vite/package.json'))) {
  console.error('build-web: vite is not installed (run `npm install`); the server will say the web client is not built.');
  process.exit(process.argv.includes('--if-stale') ? 0 : 1);
}
console.error('build-web: building the web client (web/dist)…');
const r = spawnSync(process.execPath, [join(root, 'node_modules/vite/bin/vite.js'), 'build', '--config', 'web/vite.config.ts', '--logLevel', 'warn'], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
