// The Store contract on the embedded SQLite adapter, plus its own durability behaviour.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import { MIGRATIONS } from '../../src/storage/sqlite/migrations.ts';
import { runStoreContract } from './store.case.ts';
import { heldFsync } from '../helpers/gated-fsync.ts';

runStoreContract({
  name: 'sqlite',
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'synchat-store-'));
    const file = join(dir, 'db.sqlite');
    return {
      store: new SqliteStore({ file }),
      reopen: async () => new SqliteStore({ file }),
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  },
});

it('answers a transaction only once the WAL holding it was fsynced (synchronous=FULL), in WAL mode at the schema version', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(realpathSync(dir), 'db.sqlite');
  mkdirSync(join(dir, 'disk'));
  const disk = heldFsync(join(dir, 'disk'));
  const store = new SqliteStore({ file, fsyncModule: disk.module });
  t.after(() => store.close());
  const raw = new Database(file, { readonly: true });
  t.after(() => raw.close());
  assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(raw.pragma('user_version', { simple: true }), MIGRATIONS.length);
  const uin = await store.transaction((tx) => tx.insertUser({ username: 'ida', displayName: 'I', pwHash: 'x', epoch: 'e', createTime: 1 }));
  assert.equal(disk.lastSynced(), `${file}-wal`, 'the transaction was answered after an fsync of the WAL');

  disk.hold();
  let isAnswered = false;
  const append = store.transaction((tx) => tx.append([{ uin, kind: 'msg', fields: '{}' }])).then((rows) => ((isAnswered = true), rows));
  await disk.waitParked(0);
  // Committed (another connection reads the row from the WAL), its fsync parked: not answered, not readable.
  assert.equal((raw.prepare('SELECT COUNT(*) AS n FROM log WHERE uin = ?').get(uin) as { n: number }).n, 1);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(isAnswered, false);
  assert.equal((await store.read.heads([uin]))[0]!.head, 0);
  assert.deepEqual(await store.readLog(uin, 0, 10), []);

  disk.release();
  assert.equal((await append)[0]!.seq, 1);
  assert.equal(disk.lastSynced(), `${file}-wal`);
  assert.equal((await store.read.heads([uin]))[0]!.head, 1);
});

it('refuses a database newer than the code', () => {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-store-'));
  try {
    const file = join(dir, 'db.sqlite');
    const db = new Database(file);
    db.pragma(`user_version = ${MIGRATIONS.length + 5}`);
    db.close();
    assert.throws(() => new SqliteStore({ file }), /newer than this server knows/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('hides a committed entry from reads until its WAL sync finished, while the next transaction already runs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-store-'));
  try {
    const store = new SqliteStore({ file: join(dir, 'db.sqlite') });
    t.after(() => store.close());
    const uin = await store.transaction((tx) => tx.insertUser({ username: 'frank', displayName: 'F', pwHash: 'x', epoch: 'e', createTime: 1 }));
    const first = store.transaction((tx) => tx.append([{ uin, kind: 'msg', fields: '{"n":1}' }]));
    let seenDuringSecond: unknown;
    const second = store.transaction(async (tx) => {
      // The first transaction has committed (this one could begin) but its sync answers only on a later turn of
      // the event loop, so a reader must not see its entry yet; this transaction does.
      seenDuringSecond = {
        readHead: (await store.read.heads([uin]))[0]!.head,
        readLog: (await store.readLog(uin, 0, 10)).length,
        txHead: (await tx.heads([uin]))[0]!.head,
      };
      return tx.append([{ uin, kind: 'msg', fields: '{"n":2}' }]);
    });
    await Promise.all([first, second]);
    assert.deepEqual(seenDuringSecond, { readHead: 0, readLog: 0, txHead: 1 });
    assert.equal((await store.read.heads([uin]))[0]!.head, 2);
    assert.deepEqual((await store.readLog(uin, 0, 10)).map((r) => r.seq), [1, 2]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('migrates a version-2 database: log rows, heads and selector heads carry over, and appends continue after them', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-store-'));
  try {
    const file = join(dir, 'db.sqlite');
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    for (let v = 0; v < 2; v++) db.exec(MIGRATIONS[v]!);
    db.pragma('user_version = 2');
    db.prepare(`INSERT INTO users (uin, username, display_name, pw_hash, epoch, create_time, head, heads_by_selector) VALUES (7, 'gina', 'G', 'x', 'e', 1, 2, '{"1":1,"2":2}')`).run();
    db.prepare(`INSERT INTO users (uin, username, display_name, pw_hash, epoch, create_time) VALUES (8, 'hal', 'H', 'x', 'e', 1)`).run();
    db.prepare(`INSERT INTO log (uin, seq, kind, json) VALUES (7, 1, 'msg', '{"seq":1,"kind":"msg"}'), (7, 2, 'contact', '{"seq":2,"kind":"contact"}')`).run();
    db.close();
    const store = new SqliteStore({ file });
    assert.deepEqual(await store.read.heads([7, 8]), [
      { head: 2, bySelector: { 1: 1, 2: 2 } },
      { head: 0, bySelector: {} },
    ]);
    assert.equal((await store.read.getUser(7))?.username, 'gina');
    const rows = await store.transaction((tx) => tx.append([{ uin: 7, kind: 'msg', fields: '{}' }]));
    assert.equal(rows[0]!.seq, 3);
    assert.deepEqual((await store.readLog(7, 0, 10)).map((r) => [r.seq, r.kind]), [
      [1, 'msg'],
      [2, 'contact'],
      [3, 'msg'],
    ]);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
