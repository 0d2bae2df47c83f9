// The Store contract on the embedded SQLite adapter, plus its own durability settings.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import { MIGRATIONS } from '../../src/storage/sqlite/migrations.ts';
import { runStoreContract } from './store.case.ts';

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

it('opens in WAL mode with synchronous=FULL and records the schema version', () => {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-store-'));
  try {
    const file = join(dir, 'db.sqlite');
    const store = new SqliteStore({ file });
    const db = new Database(file, { readonly: true });
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    db.close();
    void store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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
