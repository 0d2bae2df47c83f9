// PostgreSQL on a full disk: the tables of a test database moved to a tablespace on a small tmpfs, filled. A
// transaction that needs space fails with SQLSTATE 53100 and the store answers ret 9 with DISK_FULL_ERRMSG (after
// the rollback, so group commit runs the batch's jobs again alone); what was committed still reads, and writes
// succeed again once space is freed, on the same connections (docs/architecture.md "A full disk"). Needs the
// PostgreSQL server on this machine (its tablespace folder must belong to the server's user) and a tmpfs mount.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { DISK_FULL_ERRMSG, SynchatError } from '../../src/protocol/index.ts';
import { GroupCommit } from '../../src/service/group-commit.ts';
import { PostgresStore } from '../../src/storage/postgres/postgres-store.ts';
import { createTestDatabase, requirePostgres } from '../helpers/services.ts';
import { mountTmpfs } from '../helpers/tmpfs.ts';

/** The uid and gid of the local PostgreSQL server's user, or the reason there is none. */
function postgresUser(): { uid: number; gid: number } | string {
  try {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { stdio: 'pipe' }).toString().trim());
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    return 'no local postgres user: the PostgreSQL server does not run on this machine, so its tablespace cannot be put on a tmpfs here: skipped';
  }
}

test('PostgreSQL on a full disk: ret 9 "disk is full", committed rows still read, writes resume when space returns', async (t) => {
  const skip = await requirePostgres();
  if (skip) return t.skip(skip);
  const owner = postgresUser();
  if (typeof owner === 'string') return t.skip(owner);
  const fs = mountTmpfs(4 * 1024 * 1024, owner);
  if (typeof fs === 'string') return t.skip(fs);
  const db = await createTestDatabase();
  const tablespace = `synchat_full_${process.pid}`;
  const store = await PostgresStore.open({ url: db.url });
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  const gc = new GroupCommit(store, { isEnabled: true, maxBatch: 2000, publish: () => {}, onError: () => {} });
  const filler = join(fs.dir, 'filler');
  try {
    await admin.query(`CREATE TABLESPACE ${tablespace} LOCATION '${fs.dir}'`);
    await admin.query(`ALTER TABLE ALL IN TABLESPACE pg_default SET TABLESPACE ${tablespace}`);
    await admin.query(`ALTER INDEX ALL IN TABLESPACE pg_default SET TABLESPACE ${tablespace}`);
    const uin = await store.transaction((tx) => tx.insertUser({ username: 'full', displayName: 'full', pwHash: 'x', epoch: 'e', createTime: 1 }));
    const append = (n: number) => gc.run(async (_tx, fx) => (await fx.lock([uin]), fx.append(uin, 'msg', { n, text: randomBytes(6000).toString('base64') })));
    await append(0);
    const free = statfsSync(fs.dir);
    writeFileSync(filler, Buffer.alloc(Math.max(0, free.bavail * free.bsize - 128 * 1024)));
    // 8 KB entries of random text (TOASTed, barely compressible) until the tables cannot grow.
    let refusal: unknown;
    let n = 1;
    for (; n < 500 && !refusal; n++) await append(n).catch((err) => (refusal = err));
    assert.ok(refusal instanceof SynchatError, `a refusal, not ${String(refusal)}`);
    assert.deepEqual([refusal.ret, refusal.errMsg], [9, DISK_FULL_ERRMSG]);
    const kept = await store.readLog(uin, 0, 1000);
    assert.deepEqual(kept.map((r) => r.seq), kept.map((_, i) => i + 1), 'every committed entry reads back, dense');
    assert.equal(kept.length, n - 1, 'the refused append left nothing');
    t.diagnostic(`refused after ${kept.length} appends of 8 KB`);
    rmSync(filler);
    assert.equal(await append(n), kept.length + 1, 'appends again once space returns, on the same connections');
  } finally {
    rmSync(filler, { force: true });
    await gc.idle();
    await store.close();
    await admin.end();
    await db.drop();
    const c = new pg.Client({ connectionString: db.url.replace(/\/[^/]*$/, '/postgres') });
    await c.connect();
    await c.query(`DROP TABLESPACE IF EXISTS ${tablespace}`).finally(() => c.end());
    fs.unmount();
  }
});
