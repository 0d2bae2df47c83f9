// Key 0 on a user with 100,000 entries pages through the log (limit clamped to 1000) instead of loading it whole.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import { api, startServer, userDevice } from '../helpers/server.ts';

// It seeds the embedded file directly, so it runs on the SQLite store only.
const skip = process.env.STORE_UNDER_TEST === 'postgres' ? 'seeds the SQLite file directly' : undefined;

test('syncs a 100k-entry log from key 0 in pages of at most 1000, in order, each entry once', { skip }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'synchat-longlog-'));
  try {
    let srv = await startServer({ dataDir });
    const dev = await userDevice(srv.url, 'long_log');
    await srv.stop();
    // Seed the log directly through the store: 100k sends over HTTP would test the sender, not paging.
    const store = new SqliteStore({ file: join(dataDir, 'synchat.db'), synchronous: 'OFF' });
    await store.transaction(async (tx) => {
      const entries = [];
      for (let seq = 1; seq <= 100_000; seq++) entries.push({ uin: dev.uin, kind: 'msg' as const, fields: JSON.stringify({ msgId: String(seq), content: 'x' }) });
      await tx.append(entries);
    });
    await store.close();

    srv = await startServer({ dataDir });
    let key = 0;
    let pages = 0;
    let count = 0;
    for (;;) {
      const r = await api(srv.url, '/api/sync', { syncKey: key, limit: 5000 }, dev.sid);
      assert.equal(r.body.ret, 0);
      assert.ok(r.body.entries.length <= 1000, 'limit is clamped to 1000');
      for (const e of r.body.entries) assert.equal(e.seq, ++count);
      key = r.body.syncKey;
      pages++;
      if (!r.body.continueFlag) break;
    }
    assert.equal(count, 100_000);
    assert.equal(pages, 100);
    const check = await api(srv.url, '/api/synccheck?syncKey=0&timeout=0', undefined, dev.sid);
    assert.deepEqual([check.body.selector, check.body.syncKey], [1, 100_000]);
    await srv.stop();
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
