// What the server keeps on disk: owner-only modes (made so, and repaired at start), the integrity check that
// refuses a corrupt database file, and orphaned temporary blob files removed at start (#11).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { api, startServer, userDevice } from '../helpers/server.ts';
import { waitUntil } from '../helpers/wait.ts';

const isSqlite = process.env.STORE_UNDER_TEST !== 'postgres';
const skip = isSqlite ? undefined : 'the SQLite file is what is checked';

function modeOf(path: string): string {
  return (statSync(path).mode & 0o777).toString(8);
}

/** Every file and folder under `dir`, itself included. */
function walk(dir: string): { path: string; isDir: boolean }[] {
  const out = [{ path: dir, isDir: true }];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(path));
    else out.push({ path, isDir: false });
  }
  return out;
}

async function uploadOneChunk(url: string, sid: string): Promise<void> {
  const bytes = randomBytes(1000);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const init = await api(url, '/api/media/init', { size: bytes.length, sha256, mime: 'application/octet-stream', chunkSize: 65536 }, sid);
  const res = await fetch(`${url}/api/media/${init.body.uploadId}/0`, { method: 'PUT', headers: { authorization: `Bearer ${sid}` }, body: bytes });
  assert.equal((await res.json()).ret, 0);
  const done = await fetch(`${url}/api/media/${init.body.uploadId}/complete`, { method: 'POST', headers: { authorization: `Bearer ${sid}` } });
  assert.equal((await done.json()).ret, 0);
}

describe('files on disk', () => {
  it('makes the data folder 0700, the database files and media blobs 0600, and repairs looser modes at start', { skip }, async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'synchat-modes-')), 'data');
    try {
      let srv = await startServer({ dataDir });
      const dev = await userDevice(srv.url, 'modes');
      await uploadOneChunk(srv.url, dev.sid);
      const check = () => {
        assert.equal(modeOf(dataDir), '700');
        for (const f of ['synchat.db', 'synchat.db-wal', 'synchat.db-shm']) assert.equal(modeOf(join(dataDir, f)), '600', f);
        const media = walk(join(dataDir, 'media'));
        assert.ok(media.some((e) => !e.isDir), 'a blob was stored');
        for (const e of media) assert.equal(modeOf(e.path), e.isDir ? '700' : '600', e.path);
      };
      check();
      await srv.stop();

      // What an older version left: everything readable by every account.
      for (const e of walk(dataDir)) chmodSync(e.path, e.isDir ? 0o755 : 0o644);
      srv = await startServer({ dataDir });
      await waitUntil(() => walk(join(dataDir, 'media')).every((e) => modeOf(e.path) === (e.isDir ? '700' : '600')), 'the media folder is owner-only again');
      check();
      await srv.stop();
    } finally {
      rmSync(join(dataDir, '..'), { recursive: true, force: true });
    }
  });

  it('refuses to start on a database with a corrupt page, naming the file', { skip }, async () => {
    const good = mkdtempSync(join(tmpdir(), 'synchat-good-'));
    const bad = mkdtempSync(join(tmpdir(), 'synchat-corrupt-'));
    try {
      const srv = await startServer({ dataDir: good });
      const dev = await userDevice(srv.url, 'corrupt');
      for (let i = 0; i < 200; i++) await api(srv.url, '/api/profile', { displayName: `name ${i} ${'x'.repeat(200)}` }, dev.sid);
      await srv.stop(); // checkpoints: the pages are in the database file
      copyFileSync(join(good, 'synchat.db'), join(bad, 'synchat.db'));
      const pageBytes = 4096;
      const pages = statSync(join(bad, 'synchat.db')).size / pageBytes;
      assert.ok(pages > 4, `the copy has ${pages} pages`);
      // Garbage over a page in the middle (not the header page): only a read of that page would find it.
      const fd = openSync(join(bad, 'synchat.db'), 'r+');
      writeSync(fd, randomBytes(pageBytes), 0, pageBytes, Math.floor(pages / 2) * pageBytes);
      closeSync(fd);

      await assert.rejects(startServer({ dataDir: bad }), (err: Error) => {
        assert.ok(err.message.includes(join(bad, 'synchat.db')), err.message);
        assert.match(err.message, /corrupt|malformed/);
        return true;
      });
      // The intact original still starts.
      const again = await startServer({ dataDir: good });
      await again.stop();
    } finally {
      rmSync(good, { recursive: true, force: true });
      rmSync(bad, { recursive: true, force: true });
    }
  });

  it('removes temporary blob files orphaned by a crashed write at start, and keeps a fresh one', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'synchat-orphans-'));
    try {
      const chunkDir = join(dataDir, 'media', 'uploads', 'AAAAAAAAAAAAAAAAAAAAAA');
      mkdirSync(chunkDir, { recursive: true });
      const orphan = join(chunkDir, '0.0123456789ab.tmp');
      const fresh = join(chunkDir, '1.ba9876543210.tmp');
      writeFileSync(orphan, randomBytes(1000));
      writeFileSync(fresh, randomBytes(1000));
      const anHourAgo = Date.now() / 1000 - 3600;
      utimesSync(orphan, anHourAgo, anHourAgo);
      const srv = await startServer({ dataDir });
      try {
        await waitUntil(() => !existsSync(orphan), 'the orphaned temporary file is removed');
        // Younger than a minute: possibly another node's write in flight on a shared folder.
        assert.ok(existsSync(fresh));
      } finally {
        await srv.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
