// After a failed WAL fsync the server answers the writes in flight with ret 9 and exits non-zero instead of
// running on with every write refused (#11), and announces nothing of the failed batch (no PUSH, NOTIFY or
// synccheck answer: its entries may not be on disk). The disk is the store's real fsync seam (test/helpers/failing-fsync.cjs);
// the server runs as a child process, since what is tested is that process's exit.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { OP } from '../../src/protocol/index.ts';
import { api, syncAll, userDevice } from '../helpers/server.ts';
import { authedWire } from '../helpers/wire.ts';

/** How long the test waits for the exit before failing instead of hanging (not a timing assertion). */
const HANG_GUARD_MS = 15_000;
const skip = process.env.STORE_UNDER_TEST === 'postgres' ? 'the WAL fsync is the SQLite store\'s' : undefined;

test('answers the in-flight send with ret 9 and exits non-zero when the WAL fsync fails', { skip }, async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'synchat-eio-'));
  const marker = join(dataDir, 'fail-fsync-now');
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/failing-disk-server.ts', dataDir], {
    env: { ...process.env, FAILING_FSYNC_MARKER: marker },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
  });
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    void exited.then((code) => reject(new Error(`the server exited with ${code} before it listened`)));
  });
  const ports = JSON.parse(first) as { httpPort: number; tcpPort: number };
  const url = `http://127.0.0.1:${ports.httpPort}`;

  // Writes are durable while the disk works.
  const alice = await userDevice(url, 'alice');
  const ok = await api(url, '/api/sendmsg', { clientMsgId: 'c-1', to: 'alice', type: 1, content: 'on a good disk' }, alice.sid);
  assert.equal(ok.body.ret, 0);
  // Another device of alice's, caught up on a long connection (a new entry would be PUSHed), and one parked on synccheck.
  const key = (await syncAll(url, alice.sid)).syncKey;
  const { client: watcher } = await authedWire('tcp', ports, (await userDevice(url, 'alice', 'watcher')).sid, key);
  const poller = await userDevice(url, 'alice', 'poller');
  const poll = api(url, `/api/synccheck?syncKey=${key}&timeout=30000`, undefined, poller.sid).then(
    (r) => r.body,
    () => 'no answer: the process exited',
  );

  writeFileSync(marker, '');
  const failed = await api(url, '/api/sendmsg', { clientMsgId: 'c-2', to: 'alice', type: 1, content: 'on a failing disk' }, alice.sid);
  assert.equal(failed.body.ret, 9);
  assert.equal(failed.body.errMsg, 'server error');
  const guard = new Promise<string>((resolve) => setTimeout(() => resolve(`still running after ${HANG_GUARD_MS} ms`), HANG_GUARD_MS).unref());
  assert.equal(await Promise.race([exited, guard]), 1);
  await watcher.waitClosed();
  assert.deepEqual(watcher.received.filter((p) => p.op === OP.PUSH || p.op === OP.NOTIFY), [], 'the failed batch was announced');
  const polled = await poll;
  assert.ok(typeof polled === 'string' || polled.selector === 0, `the failed batch answered a synccheck: ${JSON.stringify(polled)}`);
});
