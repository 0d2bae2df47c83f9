// GroupCommit's roll-back-and-retry path on the real stores (SQLite, PostgreSQL): one job of a batch of many meets a
// constraint violation after it appended, or the batch's writes find the disk full (SQLite on a tmpfs); the batch rolls
// back and every job runs again alone. The others commit exactly once, the failing one gets its error, no event carries
// rolled-back work, and the store forgets what it cached in the rolled-back transaction (heads, counters): every log
// stays dense and later batches continue it.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { BusEvent, Store } from '../../src/core/ports.ts';
import { DISK_FULL_ERRMSG, SynchatError } from '../../src/protocol/index.ts';
import { GroupCommit } from '../../src/service/group-commit.ts';
import { PostgresStore } from '../../src/storage/postgres/postgres-store.ts';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import { createTestDatabase, requirePostgres } from '../helpers/services.ts';
import { mountTmpfs } from '../helpers/tmpfs.ts';

const JOBS = 60;
const BAD = 25;

interface Opened {
  store: Store;
  close(): Promise<void>;
}

/** Every entry an event carries, as `${uin}:${seq}:${fields}`. */
function published(events: BusEvent[][]): string[] {
  const out: string[] = [];
  for (const ev of events.flat()) {
    if (ev.type === 'news') for (const json of ev.news.entries) out.push(`${ev.news.uin}:${JSON.parse(json).n}`);
    if (ev.type === 'fanout') for (const uin of ev.fanout.uins) out.push(`${uin}:${JSON.parse(ev.fanout.fields).n}`);
  }
  return out.sort();
}

function runRollbackCases(name: string, skip: string | undefined, open: () => Promise<Opened>): void {
  describe(`GroupCommit roll-back-and-retry on ${name}`, { skip }, () => {
    it(`a job that breaks a constraint in a batch of ${JOBS}: the others commit once, it fails alone, nothing of it is published, logs stay dense`, async () => {
      const { store, close } = await open();
      const events: BusEvent[][] = [];
      const errors: unknown[] = [];
      const gc = new GroupCommit(store, { isEnabled: true, maxBatch: 2000, publish: (e) => events.push(e), onError: (e) => errors.push(e) });
      try {
        const user = (username: string) => ({ username, displayName: username, pwHash: 'x', epoch: 'e', createTime: 1 });
        const USERS = await store.transaction(async (tx) => {
          const uins: number[] = [];
          for (const name of ['u1', 'u2', 'u3', 'u4', 'u5', 'taken']) uins.push(await tx.insertUser(user(name)));
          return uins.slice(0, 5);
        });
        const runs = new Array<number>(JOBS).fill(0);
        // Each job appends one entry to one user's log (a message to itself, alone or to all: fan-outs too); the bad
        // one appends first, then inserts a user whose name is taken: a UNIQUE violation from the store itself.
        const job = (n: number) =>
          gc.run(async (tx, fx) => {
            runs[n]!++;
            if (n % 10 === 3) {
              await fx.lock(USERS);
              await fx.appendEach(USERS, 'msg', { n });
            } else {
              const uin = USERS[n % USERS.length]!;
              await fx.lock([uin]);
              await fx.append(uin, 'msg', { n });
            }
            if (n === BAD) await tx.insertUser(user('taken'));
            return n;
          });
        const outcomes = await Promise.allSettled(Array.from({ length: JOBS }, (_, n) => job(n)));
        outcomes.forEach((o, n) => {
          if (n === BAD) assert.equal(o.status, 'rejected', 'the bad job gets its error');
          else assert.deepEqual(o, { status: 'fulfilled', value: n }, `job ${n} answered`);
        });
        const bad = outcomes[BAD] as PromiseRejectedResult;
        assert.match(String((bad.reason as Error).message), /unique|duplicate/i);
        assert.ok(errors.length >= 1, 'the rollback was reported');
        // One batch ran (up to the bad job, which threw), rolled back, and every job ran again alone.
        assert.deepEqual(runs.slice(0, BAD + 1), new Array(BAD + 1).fill(2), 'jobs up to the bad one ran in the batch, then alone');
        if (store.concurrency === 1) assert.deepEqual(runs.slice(BAD + 1), new Array(JOBS - BAD - 1).fill(1), 'jobs after it ran once, alone');
        assert.equal(gc.stats.maxBatch, 1, 'nothing committed as a batch of more than one');

        // Each log holds each good job's entry exactly once, densely numbered from 1, and nothing of the bad job.
        const expected = new Map<number, number[]>(USERS.map((u) => [u, []]));
        for (let n = 0; n < JOBS; n++) {
          if (n === BAD) continue;
          for (const u of n % 10 === 3 ? USERS : [USERS[n % USERS.length]!]) expected.get(u)!.push(n);
        }
        for (const u of USERS) {
          const rows = await store.readLog(u, 0, 1000);
          assert.deepEqual(rows.map((r) => r.seq), rows.map((_, i) => i + 1), `user ${u}: seqs dense from 1`);
          assert.deepEqual(rows.map((r) => JSON.parse(r.json).n).sort((x, y) => x - y), expected.get(u), `user ${u}: every good job once, the bad one never`);
          assert.equal((await store.read.heads([u]))[0]!.head, rows.length);
        }
        // Events: exactly the committed entries, once each; none for the rolled-back batch or the bad job.
        const want = [...expected].flatMap(([u, ns]) => ns.map((n) => `${u}:${n}`)).sort();
        assert.deepEqual(published(events), want);

        // The heads cached in the rolled-back transaction were forgotten: the next batch continues each log.
        const heads = await store.read.heads(USERS);
        await Promise.all(USERS.map((u) => gc.run(async (_tx, fx) => (await fx.lock([u]), fx.append(u, 'msg', { n: 1000 + u })))));
        for (const [i, u] of USERS.entries()) assert.equal((await store.read.heads([u]))[0]!.head, heads[i]!.head + 1);
      } finally {
        await gc.idle();
        await close();
      }
    });
  });
}

runRollbackCases('SQLite', undefined, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-gc-rollback-'));
  const store = new SqliteStore({ file: join(dir, 'db.sqlite') });
  return {
    store,
    async close() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

runRollbackCases('PostgreSQL', await requirePostgres(), async () => {
  const db = await createTestDatabase();
  const store = await PostgresStore.open({ url: db.url });
  return {
    store,
    async close() {
      await store.close();
      await db.drop();
    },
  };
});

describe('GroupCommit roll-back-and-retry when the batch’s transaction fails in the store (SQLite on a full tmpfs)', () => {
  it('a batch whose writes find the disk full: every job runs again alone, the small ones commit once, the one too big for the disk gets ret 9 "disk is full", nothing of the failed batch is published', async (t) => {
    const fs = mountTmpfs(4 * 1024 * 1024);
    if (typeof fs === 'string') return t.skip(fs);
    const store = new SqliteStore({ file: join(fs.dir, 'db.sqlite') });
    const events: BusEvent[][] = [];
    const errors: unknown[] = [];
    const gc = new GroupCommit(store, { isEnabled: true, maxBatch: 2000, publish: (e) => events.push(e), onError: (e) => errors.push(e) });
    try {
      const uins = await store.transaction(async (tx) => {
        const out: number[] = [];
        for (const name of ['a', 'b', 'c']) out.push(await tx.insertUser({ username: name, displayName: name, pwHash: 'x', epoch: 'e', createTime: 1 }));
        return out;
      });
      // Leave 512 KiB: room for the small jobs one at a time, never for the 2 MiB entry. SQLite writes a transaction's
      // pages to the WAL at COMMIT (or when its page cache spills), so the whole batch fails in the store, not in a job.
      const free = statfsSync(fs.dir);
      writeFileSync(join(fs.dir, 'filler'), Buffer.alloc(Math.max(0, free.bavail * free.bsize - 512 * 1024)));
      const BIG = 7;
      const runs = new Array<number>(20).fill(0);
      const outcomes = await Promise.allSettled(
        runs.map((_, n) =>
          gc.run(async (_tx, fx) => {
            runs[n]!++;
            const uin = uins[n % uins.length]!;
            await fx.lock([uin]);
            return fx.append(uin, 'msg', { n, text: n === BIG ? 'x'.repeat(2 * 1024 * 1024) : 'small' });
          }),
        ),
      );
      const big = outcomes[BIG] as PromiseRejectedResult;
      assert.equal(big.status, 'rejected');
      assert.ok(big.reason instanceof SynchatError && big.reason.ret === 9 && big.reason.errMsg === DISK_FULL_ERRMSG, String(big.reason));
      outcomes.forEach((o, n) => n === BIG || assert.equal(o.status, 'fulfilled', `job ${n}: ${String((o as PromiseRejectedResult).reason)}`));
      assert.deepEqual(runs, new Array(20).fill(2), 'every job ran in the failed batch, then alone');
      assert.ok(errors.some((e) => e instanceof SynchatError && e.errMsg === DISK_FULL_ERRMSG), 'the failed batch was reported');
      const committed: string[] = [];
      for (const uin of uins) {
        const rows = await store.readLog(uin, 0, 100);
        assert.deepEqual(rows.map((r) => r.seq), rows.map((_, i) => i + 1), `user ${uin}: seqs dense from 1`);
        for (const r of rows) committed.push(`${uin}:${JSON.parse(r.json).n}`);
      }
      const want = runs.flatMap((_, n) => (n === BIG ? [] : [`${uins[n % uins.length]}:${n}`]));
      assert.deepEqual(committed.sort(), want.sort(), 'every small job once, the big one never');
      assert.deepEqual(published(events), want.sort(), 'events carry exactly the committed entries');
      // Space returns: the refused job, run again, commits and continues its user's log.
      rmSync(join(fs.dir, 'filler'));
      const uin = uins[BIG % uins.length]!;
      const head = (await store.read.heads([uin]))[0]!.head;
      assert.equal(await gc.run(async (_tx, fx) => (await fx.lock([uin]), fx.append(uin, 'msg', { n: BIG, text: 'x'.repeat(2 * 1024 * 1024) }))), head + 1);
    } finally {
      await gc.idle();
      await store.close();
      fs.unmount();
    }
  });
});
