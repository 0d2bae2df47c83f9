// The ClientStore contract, run against every store: memory, file (Node) and IndexedDB (fake-indexeddb).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { IDBFactory } from 'fake-indexeddb';
import { IndexedDbStore, MemoryStore, type ClientStore, type OutboxItem, type SessionState } from '../../src/sdk/index.ts';
import { FileStore } from '../../src/sdk/node/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'synchat-sdk-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const session: SessionState = { sid: 's'.repeat(43), uin: 7, username: 'alice', deviceId: 'laptop', syncKey: 42, epoch: 'abcd' };
const item = (id: string, state: OutboxItem['state'] = 'queued'): OutboxItem => ({
  clientMsgId: id,
  to: 'bob',
  type: 1,
  content: `text ${id}`,
  state,
  attempts: 1,
  queuedAt: 1_700_000_000_000,
  lastError: { ret: -1, errMsg: 'connection lost' },
});

interface StoreCase {
  name: string;
  /** A store; `reopen` gives a second instance over the same storage (a restart), when the store persists. */
  open(): { store: ClientStore; reopen?: () => ClientStore };
}

let n = 0;
const cases: StoreCase[] = [
  { name: 'MemoryStore', open: () => ({ store: new MemoryStore() }) },
  {
    name: 'FileStore',
    open: () => {
      const file = join(dir, `state-${++n}.json`);
      return { store: new FileStore(file), reopen: () => new FileStore(file) };
    },
  },
  {
    name: 'IndexedDbStore',
    open: () => {
      const indexedDB = new IDBFactory();
      const name = `db-${++n}`;
      return { store: new IndexedDbStore({ name, indexedDB }), reopen: () => new IndexedDbStore({ name, indexedDB }) };
    },
  },
];

for (const c of cases) {
  describe(c.name, () => {
    it('starts empty', async () => {
      const { store } = c.open();
      assert.equal(await store.loadSession(), undefined);
      assert.deepEqual(await store.loadOutbox(), []);
      await store.close?.();
    });

    it('returns the last saved session and outbox, and forgets the session when saved as undefined', async () => {
      const { store } = c.open();
      await store.saveSession(session);
      await store.saveSession({ ...session, syncKey: 50 });
      await store.saveOutbox([item('a'), item('b', 'failed')]);
      assert.deepEqual(await store.loadSession(), { ...session, syncKey: 50 });
      assert.deepEqual(await store.loadOutbox(), [item('a'), item('b', 'failed')]);
      await store.saveSession(undefined);
      assert.equal(await store.loadSession(), undefined);
      assert.deepEqual((await store.loadOutbox()).map((i) => i.clientMsgId), ['a', 'b'], 'the outbox outlives the session');
      await store.close?.();
    });

    it('does not let callers alias stored values', async () => {
      const { store } = c.open();
      const s = { ...session };
      await store.saveSession(s);
      s.syncKey = 999;
      const loaded = (await store.loadSession())!;
      assert.equal(loaded.syncKey, 42);
      loaded.syncKey = 1000;
      assert.equal((await store.loadSession())!.syncKey, 42);
      await store.close?.();
    });

    it('keeps what was saved across a reopen when it persists', { skip: c.name === 'MemoryStore' ? 'memory does not persist' : false }, async () => {
      const { store, reopen } = c.open();
      await store.saveSession(session);
      await store.saveOutbox([item('x')]);
      await store.close?.();
      const again = reopen!();
      assert.deepEqual(await again.loadSession(), session);
      assert.deepEqual(await again.loadOutbox(), [item('x')]);
      await again.close?.();
    });
  });
}

describe('FileStore file', () => {
  it('writes whole JSON documents (temp file + rename), never a torn file', async () => {
    const file = join(dir, 'whole.json');
    const store = new FileStore(file);
    await Promise.all([store.saveSession(session)]);
    for (let i = 0; i < 20; i++) await store.saveOutbox(Array.from({ length: i }, (_, k) => item(`m${k}`)));
    const parsed = JSON.parse(readFileSync(file, 'utf8'));
    assert.equal(parsed.outbox.length, 19);
    assert.equal(parsed.session.username, 'alice');
  });
});
