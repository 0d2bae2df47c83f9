// GroupCommit over the real SQLite store: batches, pipelining, and the order of the events it publishes.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { LockConflict, type BusEvent, type Store, type StoreTx } from '../../src/core/ports.ts';
import { GroupCommit } from '../../src/service/group-commit.ts';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import { RET, SynchatError } from '../../src/protocol/index.ts';

function open(
  t: { after(fn: () => unknown): void },
  wrap: (store: SqliteStore) => Store = (s) => s,
): { store: SqliteStore; published: BusEvent[][]; gc: GroupCommit } {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-gc-'));
  const store = new SqliteStore({ file: join(dir, 'db.sqlite') });
  const published: BusEvent[][] = [];
  const gc = new GroupCommit(wrap(store), { isEnabled: true, maxBatch: 2000, publish: (events) => published.push(events), onError: () => {} });
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
    gc.run(async (_tx, fx) => (await fx.lock([u]), [await fx.append(u, 'msg', { n: 1 }), await fx.append(u, 'read', { n: 2 })])),
    gc.run(async (_tx, fx) => (await fx.lock([u, v, w]), fx.appendEach([u, v, w], 'msg', { g: 1 }))),
    gc.run(async (_tx, fx) => (await fx.lock([u, v]), [await fx.append(u, 'msg', { n: 3 }), await fx.append(v, 'msg', { n: 4 })])),
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
    await fx.lock([7]);
    await fx.append(7, 'msg', { bad: true });
    throw new Error('invariant');
  });
  const fine = gc.run(async (_tx, fx) => (await fx.lock([7]), fx.append(7, 'msg', { ok: true })));
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
      const uin = 1 + (n % 5);
      all.push(gc.run(async (_tx, fx) => (await fx.lock([uin]), fx.append(uin, 'msg', { n }))).then((seq) => (answered.push(n), seq)));
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

test('an append to a log the job did not lock is refused (a networked store would race another node)', async (t) => {
  const { gc, store } = open(t);
  await assert.rejects(gc.run(async (_tx, fx) => fx.append(4, 'msg', { n: 1 })), /without Effects.lock/);
  assert.equal((await store.read.heads([4]))[0]!.head, 0);
});

test('a job whose locks conflict runs again, first in the next batch, and is answered once', async (t) => {
  // The seam a networked store uses: lockLogs throws LockConflict when another writer holds a lock it cannot wait
  // for. Here user 9's lock conflicts the first time any transaction asks for it after holding others.
  let conflictsLeft = 1;
  const order: string[] = [];
  const { gc, store } = open(t, (inner) => ({
    name: inner.name,
    concurrency: inner.concurrency,
    read: inner.read,
    readLog: (uin, after, limit) => inner.readLog(uin, after, limit),
    close: () => inner.close(),
    transaction: (fn) =>
      inner.transaction((tx) => {
        let held = 0;
        const lockLogs = async (uins: readonly number[]) => {
          if (uins.includes(9) && held > 0 && conflictsLeft > 0) {
            conflictsLeft--;
            throw new LockConflict(uins);
          }
          held += uins.length;
        };
        const locking = new Proxy(tx, {
          get: (target, key) => {
            if (key === 'lockLogs') return lockLogs;
            const v = (target as any)[key];
            return typeof v === 'function' ? v.bind(target) : v;
          },
        }) as StoreTx;
        order.push('batch');
        return fn(locking);
      }),
  }));
  const job = (uin: number, n: number) =>
    gc.run(async (tx, fx) => {
      await fx.lock([uin]);
      order.push(`job ${n}`);
      return fx.append(uin, 'msg', { n });
    });
  const answers = await Promise.all([job(1, 1), job(9, 2), job(2, 3)]);
  assert.deepEqual(answers, [1, 1, 1], 'every job answered once, with its seq');
  assert.deepEqual(order, ['batch', 'job 1', 'job 3', 'batch', 'job 2'], 'the conflicted job ran again first in the next batch');
  assert.equal(gc.stats.lockConflicts, 1);
  assert.deepEqual((await store.readLog(9, 0, 10)).map((r) => r.json), ['{"seq":1,"kind":"msg","n":2}']);
});
