// The ClientStore contract, run against every store: memory, file (Node) and IndexedDB (fake-indexeddb).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
  it('leaves the old or the new document, never a torn file, when its process is killed in the middle of a save', async () => {
    const base = 1000;
    let interrupted = 0;
    for (let kill = 0; kill < KILLS; kill++) {
      const file = join(dir, `killed-${kill}.json`);
      const { lastLine } = await killWriterAfter(file, base, 30 + kill * 40);
      const inFlight = /^saving (\d+)$/.exec(lastLine);
      // Killed inside save n: the file holds save n-1 (n = 1: no file yet) or, if the rename was done, save n.
      const n = Number(inFlight?.[1] ?? /^saved (\d+)$/.exec(lastLine)![1]);
      const allowed = inFlight ? [n - 1, n] : [n];
      if (inFlight) interrupted++;
      const text = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
      const outbox = text === undefined ? [] : (JSON.parse(text).outbox as unknown[]);
      const saved = outbox.length === 0 ? 0 : outbox.length - base;
      assert.ok(allowed.includes(saved), `kill ${kill} after "${lastLine}": the file holds save ${saved}, expected one of ${allowed}`);
      assert.equal((await new FileStore(file).loadOutbox()).length, outbox.length, 'a new store reads it back');
    }
    assert.ok(interrupted >= KILLS / 2, `at least half the kills land inside a save (${interrupted} of ${KILLS})`);
  });
});

/** Kills per run of the FileStore crash test: each one spawns a writer (about 0.5 s). */
const KILLS = 6;
/** How long a writer may take to start saving before the test fails instead of hanging. */
const WRITER_START_GUARD_MS = 20_000;

/**
 * Starts test/helpers/file-store-writer.ts on `file`, lets it save for `ms` after its first save began, kills it
 * with SIGKILL and resolves with the last line it printed once it has exited.
 */
function killWriterAfter(file: string, base: number, ms: number): Promise<{ lastLine: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/file-store-writer.ts'], {
    env: { ...process.env, FILE: file, BASE: String(base) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  return new Promise((resolve, reject) => {
    const guard = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the writer printed nothing within ${WRITER_START_GUARD_MS} ms`));
    }, WRITER_START_GUARD_MS);
    child.stdout.on('data', (c: Buffer) => {
      if (out === '') {
        clearTimeout(guard);
        setTimeout(() => child.kill('SIGKILL'), ms);
      }
      out += c.toString();
    });
    child.once('exit', (code, signal) => {
      clearTimeout(guard);
      if (signal !== 'SIGKILL') return reject(new Error(`the writer exited by itself (${code ?? signal}): ${out}`));
      resolve({ lastLine: out.trimEnd().split('\n').at(-1)! });
    });
  });
}
