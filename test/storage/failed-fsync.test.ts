// After a failed WAL fsync the server answers the writes in flight with ret 9 and exits non-zero instead of
// running on with every write refused (#11). The disk is the store's real fsync seam (test/helpers/failing-fsync.cjs);
// the server runs as a child process, since what is tested is that process's exit.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { api, userDevice } from '../helpers/server.ts';

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
  const url = `http://127.0.0.1:${JSON.parse(first).httpPort}`;

  // Writes are durable while the disk works.
  const alice = await userDevice(url, 'alice');
  const ok = await api(url, '/api/sendmsg', { clientMsgId: 'c-1', to: 'alice', type: 1, content: 'on a good disk' }, alice.sid);
  assert.equal(ok.body.ret, 0);

  writeFileSync(marker, '');
  const failed = await api(url, '/api/sendmsg', { clientMsgId: 'c-2', to: 'alice', type: 1, content: 'on a failing disk' }, alice.sid);
  assert.equal(failed.body.ret, 9);
  assert.equal(failed.body.errMsg, 'server error');
  const guard = new Promise<string>((resolve) => setTimeout(() => resolve(`still running after ${HANG_GUARD_MS} ms`), HANG_GUARD_MS).unref());
  assert.equal(await Promise.race([exited, guard]), 1);
});
