#!/usr/bin/env node
// Builds the web client (web/ → web/dist) with Vite. `--if-stale` (used by `npm start`'s prestart) builds only
// when web/dist/index.html is missing or older than any file under web/src, web/index.html, web/admin.html,
// web/public or the SDK/protocol/ops sources it bundles, so a fresh clone works with `npm start` and a warm one starts at once.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
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

const isIfStale = process.argv.includes('--if-stale');

function isFresh() {
  if (!existsSync(out)) return false;
  const built = statSync(out).mtimeMs;
  const sources = ['web/src', 'web/public', 'web/index.html', 'web/admin.html', 'web/vite.config.ts', 'src/sdk', 'src/protocol', 'src/ops'].map((p) => newest(join(root, p)));
  return Math.max(...sources) <= built;
}

if (isIfStale && isFresh()) process.exit(0);
if (!existsSync(join(root, 'node_modules/vite/package.json'))) {
  console.error('build-web: vite is not installed (run `npm install`); the server will say the web client is not built.');
  process.exit(isIfStale ? 0 : 1);
}

// Test files run in parallel processes and each may ask for a build: one builds, the others wait and then find
// the build fresh (a build empties web/dist first, which must not happen under a running test's server).
const lock = join(root, 'web/.build-lock');
const sleeper = new Int32Array(new SharedArrayBuffer(4));
for (const start = Date.now(); ; ) {
  try {
    mkdirSync(lock);
    break;
  } catch (err) {
    if (err.code !== 'EEXIST') throw err;
    // A lock left by a killed build is taken over after two minutes.
    if (Date.now() - start > 120_000 || Date.now() - statSync(lock, { throwIfNoEntry: false })?.mtimeMs > 120_000) {
      rmSync(lock, { recursive: true, force: true });
      continue;
    }
    Atomics.wait(sleeper, 0, 0, 200);
  }
}
let status = 0;
try {
  if (!(isIfStale && isFresh())) {
    console.error('build-web: building the web client (web/dist)…');
    const r = spawnSync(process.execPath, [join(root, 'node_modules/vite/bin/vite.js'), 'build', '--config', 'web/vite.config.ts', '--logLevel', 'warn'], { cwd: root, stdio: 'inherit' });
    status = r.status ?? 1;
  }
} finally {
  rmSync(lock, { recursive: true, force: true });
}
process.exit(status);
