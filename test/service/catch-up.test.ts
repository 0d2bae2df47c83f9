// The catch-up sweep over a real store: heads that moved without news reach this node's listeners, once.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BusEvent } from '../../src/core/ports.ts';
import { CatchUp } from '../../src/service/catch-up.ts';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';

test('announces heads that moved without news, with the bits of what is new, and only for held users', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-catchup-'));
  const store = new SqliteStore({ file: join(dir, 'db.sqlite') });
  const announced: BusEvent[] = [];
  const catchUp = new CatchUp(store, (events) => announced.push(...events), 60_000);
  t.after(async () => {
    catchUp.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const append = (uin: number, kind: 'msg' | 'contact') =>
    store.transaction(async (tx) => {
      await tx.lockLogs([uin]);
      await tx.append([{ uin, kind, fields: '{}' }]);
    });
  await append(1, 'msg');
  const release1 = catchUp.hold(1, 1);
  catchUp.hold(2, 0);
  // Another node commits for users 1, 2 and 3; its news never arrives here.
  await append(1, 'contact');
  await append(2, 'msg');
  await append(3, 'msg');
  await catchUp.sweep();
  assert.deepEqual(announced, [
    { type: 'news', news: { uin: 1, prevSeq: -1, head: 2, selector: 2, entries: [] } },
    { type: 'news', news: { uin: 2, prevSeq: -1, head: 1, selector: 1, entries: [] } },
  ]);
  // News that did arrive counts as announced: nothing is repeated.
  await append(2, 'msg');
  catchUp.observe([{ type: 'news', news: { uin: 2, prevSeq: 1, head: 2, selector: 1, entries: ['{}'] } }]);
  release1();
  await append(1, 'msg');
  await catchUp.sweep();
  assert.equal(announced.length, 2, 'released user 1 and announced user 2 are not swept again');
  assert.equal(catchUp.stats.announced, 2);
});
