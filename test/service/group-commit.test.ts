// GroupCommit over the real SQLite store: batches, pipelining, and the order of the events it publishes.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BusEvent } from '../../src/core/ports.ts';
import { GroupCommit } from '../../src/service/group-commit.ts';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import { RET, SynchatError } from '../../src/protocol/index.ts';

function open(t: { after(fn: () => unknown): void }): { store: SqliteStore; published: BusEvent[][]; gc: GroupCommit } {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-gc-'));
  const store = new SqliteStore({ file: join(dir, 'db.sqlite') });
  const published: BusEvent[][] = [];
  const gc = new GroupCommit(store, { isEnabled: true, maxBatch: 2000, publish: (events) => published.push(events), onError: () => {} });
  t.after(async () => {
    await gc.idle();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store, published, gc };
}

test('publishes a batch’s appends in each user’s log order: single appends merge, a fan-out is one event', async (t) => {
  const { gc, published } = open(t);
  const [u, v, w] = [3, 1, 2];
  const seqs = await Promise.all([
    gc.run(async (_tx, fx) => [await fx.append(u, 'msg', { n: 1 }), await fx.append(u, 'read', { n: 2 })]),
    gc.run(async (_tx, fx) => fx.appendEach([u, v, w], 'msg', { g: 1 })),
    gc.run(async (_tx, fx) => [await fx.append(u, 'msg', { n: 3 }), await fx.append(v, 'msg', { n: 4 })]),
  ]);
  assert.deepEqual(seqs, [[1, 2], [3, 1, 1], [4, 2]], 'appendEach answers seqs in the order asked');
  assert.equal(published.length, 1, 'one batch');
  assert.deepEqual(published[0], [
    { type: 'news', news: { uin: u, prevSeq: 0, head: 2, selector: 1 | 4, entries: ['{"seq":1,"kind":"msg","n":1}', '{"seq":2,"kind":"read","n":2}'] } },
    // Ascending uins, each with its own seq; the body once.
    { type: 'fanout', fanout: { kind: 'msg', selector: 1, fields: '{"g":1}', uins: [v, w, u], seqs: [1, 1, 3] } },
    // u's entry after the fan-out starts a new event (order per user is the log's order).
    { type: 'news', news: { uin: u, prevSeq: 3, head: 4, selector: 1, entries: ['{"seq":4,"kind":"msg","n":3}'] } },
    { type: 'news', news: { uin: v, prevSeq: 1, head: 2, selector: 1, entries: ['{"seq":2,"kind":"msg","n":4}'] } },
  ]);
});

test('a refused job fails alone and leaves nothing in the log; a broken one rolls back and its neighbours still commit', async (t) => {
  const { gc, store, published } = open(t);
  const refused = gc.run(async () => {
    throw new SynchatError(RET.FORBIDDEN, 'no');
  });
  const broken = gc.run(async (_tx, fx) => {
    await fx.append(7, 'msg', { bad: true });
    throw new Error('invariant');
  });
  const fine = gc.run(async (_tx, fx) => fx.append(7, 'msg', { ok: true }));
  await assert.rejects(refused, /no/);
  await assert.rejects(broken, /invariant/);
  assert.equal(await fine, 1, 'the rolled-back append did not take seq 1');
  assert.deepEqual((await store.readLog(7, 0, 10)).map((r) => r.json), ['{"seq":1,"kind":"msg","ok":true}']);
  assert.deepEqual(published.flat().map((e) => e.type), ['news']);
});

test('answers and publishes pipelined batches in commit order, every job exactly once', async (t) => {
  const { gc, store, published } = open(t);
  const answered: number[] = [];
  // Jobs arriving over several turns of the event loop form several batches, two in flight at a time.
  const all: Promise<number>[] = [];
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 25; i++) {
      const n = round * 25 + i;
      all.push(gc.run(async (_tx, fx) => fx.append(1 + (n % 5), 'msg', { n })).then((seq) => (answered.push(n), seq)));
    }
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(all);
  assert.deepEqual(answered, Array.from({ length: 500 }, (_, n) => n), 'answers in submission order');
  assert.ok(published.length > 1, `several batches (got ${published.length})`);
  const seen = new Map<number, number>();
  for (const ev of published.flat()) {
    assert.equal(ev.type, 'news');
    if (ev.type !== 'news') continue;
    assert.equal(ev.news.prevSeq, seen.get(ev.news.uin) ?? 0, 'each user’s news continues where the last left off');
    seen.set(ev.news.uin, ev.news.head);
  }
  assert.deepEqual([...seen.entries()].sort(), [[1, 100], [2, 100], [3, 100], [4, 100], [5, 100]]);
  for (let uin = 1; uin <= 5; uin++) assert.equal((await store.read.heads([uin]))[0]!.head, 100);
});
