// The SQLite writer's cache of log heads is bounded (SqliteStoreOptions.headCacheMax): driven past its bound, it
// keeps at most that many users after each commit, and a user whose head was evicted gets its next entry at the
// right seq (the head is read again from the database), also when one transaction moves more users than the bound.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';

it('keeps at most headCacheMax heads after each commit and appends at the right seq after an eviction', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-heads-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new SqliteStore({ file: join(dir, 'db.sqlite'), headCacheMax: 8 });
  t.after(() => store.close());
  const uins = Array.from({ length: 30 }, (_, i) => 1000 + i);
  for (const uin of uins) {
    await store.transaction((tx) => tx.append([{ uin, kind: 'msg', fields: '{"n":1}' }]));
    assert.ok(store.cachedHeads <= 8, `${store.cachedHeads} heads cached after writing to user ${uin}`);
  }
  // One transaction moving 20 users (more than the bound): each gets seq 2, the first ones read from the database.
  const rows = await store.transaction((tx) => tx.append(uins.slice(0, 20).map((uin) => ({ uin, kind: 'msg' as const, fields: '{"n":2}' }))));
  assert.deepEqual(rows.map((r) => r.seq), uins.slice(0, 20).map(() => 2));
  assert.ok(store.cachedHeads <= 8, `${store.cachedHeads} heads cached after a transaction over 20 users`);
  // The longest-evicted user's log continues where it stopped, and reads see every entry once.
  const [row] = await store.transaction((tx) => tx.append([{ uin: uins[0]!, kind: 'msg', fields: '{"n":3}' }]));
  assert.equal(row!.seq, 3);
  assert.deepEqual((await store.readLog(uins[0]!, 0, 10)).map((r) => r.seq), [1, 2, 3]);
  assert.deepEqual((await store.read.heads([uins[0]!, uins[25]!])).map((h) => h.head), [3, 1]);
});
