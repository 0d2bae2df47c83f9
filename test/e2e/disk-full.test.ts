// The data folder on a small tmpfs, filled: writes answer ret 9 "disk is full" within a bound and never hang,
// reads keep working, media uploads leave no partial file, nothing committed is damaged, and writes succeed again
// once space returns, without a restart (docs/architecture.md "A full disk").
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { DISK_FULL_ERRMSG, OP } from '../../src/protocol/index.ts';
import { befriend, startServer, syncAll, userDevice } from '../helpers/server.ts';
import { freePort, spawnServerProcess, type ServerChild } from '../helpers/process.ts';
import { mountTmpfs } from '../helpers/tmpfs.ts';
import { authedWire } from '../helpers/wire.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Every request must be answered within this, in ms: a full disk must never leave a caller waiting. */
const ANSWER_BOUND_MS = 10_000;
const CHUNK = 256 * KiB;

interface Answer {
  status: number;
  body: any;
  ms: number;
}

/** One HTTP call that must be answered within ANSWER_BOUND_MS (else it throws, failing the test). */
async function call(url: string, path: string, body: unknown, sid?: string, method: 'GET' | 'POST' | 'PUT' = 'POST'): Promise<Answer> {
  const started = performance.now();
  const headers: Record<string, string> = {};
  if (sid) headers.authorization = `Bearer ${sid}`;
  const isBytes = body instanceof Uint8Array;
  if (method !== 'GET') headers['content-type'] = isBytes ? 'application/octet-stream' : 'application/json';
  const payload = method === 'GET' ? undefined : isBytes ? (body as Uint8Array<ArrayBuffer>) : JSON.stringify(body ?? {});
  const res = await fetch(url + path, { method, headers, body: payload, signal: AbortSignal.timeout(ANSWER_BOUND_MS) });
  const bytes = Buffer.from(await res.arrayBuffer());
  const isJson = res.headers.get('content-type')?.includes('json') ?? false;
  return { status: res.status, body: isJson ? JSON.parse(bytes.toString()) : bytes, ms: performance.now() - started };
}

function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Every temporary file left under `dir` (a write that failed half-way must remove its own). */
function tempFiles(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.tmp'));
}

/** Bob's whole log, read page by page. */
async function logOf(url: string, sid: string): Promise<any[]> {
  const entries: any[] = [];
  for (let key = 0; ; ) {
    const r = await call(url, '/api/sync', { syncKey: key }, sid);
    assert.equal(r.body.ret, 0, JSON.stringify(r.body));
    entries.push(...r.body.entries);
    key = r.body.syncKey;
    if (!r.body.continueFlag) return entries;
  }
}

function assertDiskFull(a: Answer, what: string): void {
  assert.deepEqual([a.status, a.body.ret, a.body.errMsg], [500, 9, DISK_FULL_ERRMSG], `${what}: ${JSON.stringify(a.body)}`);
}

/** The whole scenario on a server with `workers` gateway processes. */
async function fillAndFree(t: TestContext, workers: string): Promise<void> {
  const fs = mountTmpfs(16 * MiB);
  if (typeof fs === 'string') {
    t.skip(fs);
    return;
  }
  let server: ServerChild | undefined;
  t.after(async () => {
    await server?.stop();
    fs.unmount();
  });
  const tcpPort = await freePort();
  const env = { SYNCHAT_DATA_DIR: fs.dir, SYNCHAT_WORKERS: workers, SYNCHAT_TCP_PORT: String(tcpPort) };
  server = await spawnServerProcess(env);
  const url = server.url;
  const alice = await userDevice(url, 'full_alice');
  const bob = await userDevice(url, 'full_bob');
  await befriend(url, alice, bob);
  // A file bob can read, stored and sent before the disk fills.
  const file = randomBytes(200 * KiB);
  const init = await call(url, '/api/media/init', { size: file.length, sha256: sha256(file), mime: 'application/octet-stream', chunkSize: CHUNK, name: 'a.bin' }, alice.sid);
  assert.equal((await call(url, `/api/media/${init.body.uploadId}/0`, file, alice.sid, 'PUT')).body.ret, 0);
  const { mediaId } = (await call(url, `/api/media/${init.body.uploadId}/complete`, {}, alice.sid)).body;
  assert.equal((await call(url, '/api/sendmsg', { clientMsgId: 'file', to: 'full_bob', type: 49, content: '', mediaId }, alice.sid)).body.ret, 0);

  // An upload whose chunks are all in before the disk fills; its `complete` will need room for the whole file.
  const whole = randomBytes(2 * CHUNK);
  const pending = await call(url, '/api/media/init', { size: whole.length, sha256: sha256(whole), mime: 'application/octet-stream', chunkSize: CHUNK }, alice.sid);
  for (const i of [0, 1]) assert.equal((await call(url, `/api/media/${pending.body.uploadId}/${i}`, whole.subarray(i * CHUNK, (i + 1) * CHUNK), alice.sid, 'PUT')).body.ret, 0);

  // A photo with EXIF (re-encoded at complete), all chunks in; then room for the assembled upload but not for its
  // re-encoded copy: libvips's failed write is the disk's failure (ret 9, the upload kept), not an undecodable image.
  const noise = { type: 'gaussian' as const, mean: 128, sigma: 30 };
  const photo = await sharp({ create: { width: 1200, height: 1200, channels: 3, background: '#808080', noise } }).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
  const photoUp = await call(url, '/api/media/init', { size: photo.length, sha256: sha256(photo), mime: 'image/jpeg', chunkSize: CHUNK }, alice.sid);
  for (let i = 0; i * CHUNK < photo.length; i++) {
    assert.equal((await call(url, `/api/media/${photoUp.body.uploadId}/${i}`, photo.subarray(i * CHUNK, (i + 1) * CHUNK), alice.sid, 'PUT')).body.ret, 0);
  }
  const filler = join(fs.dir, 'filler');
  writeFileSync(filler, Buffer.alloc(Math.max(0, freeBytes(fs.dir) - photo.length - 256 * KiB)));
  assertDiskFull(await call(url, `/api/media/${photoUp.body.uploadId}/complete`, {}, alice.sid), `re-encoding a ${photo.length}-byte photo with room for the upload only`);
  assert.deepEqual(tempFiles(fs.dir), [], 'no partial file of the photo left behind');

  // Fill the disk but 256 KiB, then send 16 KiB texts until the store refuses one.
  appendFileSync(filler, Buffer.alloc(Math.max(0, freeBytes(fs.dir) - 256 * KiB)));
  const answered = ['file'];
  let refused: Answer | undefined;
  let sends = 0;
  for (; sends < 400 && !refused; sends++) {
    const r = await call(url, '/api/sendmsg', { clientMsgId: `m-${sends}`, to: 'full_bob', type: 1, content: `${sends} ${'x'.repeat(16_000)}` }, alice.sid);
    if (r.body.ret === 0) answered.push(`m-${sends}`);
    else refused = r;
  }
  assert.ok(refused, `400 sends of 16 KiB fitted in 256 KiB (${answered.length} answered)`);
  assertDiskFull(refused, 'the send that found the disk full');
  t.diagnostic(`disk full after ${answered.length - 1} texts of 16 KiB: ${refused.status} ${JSON.stringify(refused.body)} in ${refused.ms.toFixed(0)} ms`);
  // More writes, each answered (AbortSignal bounds every call): concurrent sends in one batch and a group created.
  // A small write may still fit in pages SQLite already holds; one that needs space is refused, and none hangs.
  const late = await Promise.all(Array.from({ length: 8 }, (_, i) => call(url, '/api/sendmsg', { clientMsgId: `late-${i}`, to: 'full_bob', type: 1, content: 'y'.repeat(16_000) }, alice.sid)));
  late.forEach((w, i) => (w.body.ret === 0 ? answered.push(`late-${i}`) : assertDiskFull(w, `send ${i} of a batch on a full disk`)));
  assert.ok(late.some((w) => w.body.ret !== 0), 'a batch of 16 KiB sends on a full disk was refused');
  const group = await call(url, '/api/groups/create', { name: 'on a full disk', members: ['full_bob'] }, alice.sid);
  if (group.body.ret !== 0) assertDiskFull(group, 'a group created on a full disk');
  // Over the long connection too: SEND_ACK carries the same answer, and the connection stays open for reads.
  const wire = (await authedWire('tcp', { httpPort: Number(new URL(url).port), tcpPort }, alice.sid)).client;
  try {
    const ack = await wire.request(OP.SEND, { clientMsgId: 'wire-full', to: 'full_bob', type: 1, content: 'z'.repeat(16_000) });
    assert.equal(ack.op, OP.SEND_ACK);
    if (ack.body.ret === 0) answered.push('wire-full');
    else assert.deepEqual([ack.body.ret, ack.body.errMsg], [9, DISK_FULL_ERRMSG], JSON.stringify(ack.body));
    const synced = await wire.request(OP.SYNC, { syncKey: 0 });
    assert.equal(synced.body.ret, 0, 'the same connection still syncs');
    t.diagnostic(`over TCP: SEND_ACK ret ${ack.body.ret}; SYNC_RESP ret ${synced.body.ret}`);
  } finally {
    wire.close();
  }
  t.diagnostic(`then: ${late.filter((w) => w.body.ret !== 0).length} of 8 concurrent 16 KiB sends refused in ≤ ${Math.max(...late.map((w) => w.ms)).toFixed(0)} ms, a group create answered ret ${group.body.ret}`);
  const big = randomBytes(3 * CHUNK);
  const upload = await call(url, '/api/media/init', { size: big.length, sha256: sha256(big), mime: 'application/octet-stream', chunkSize: CHUNK }, alice.sid);
  if (upload.body.ret !== 0) assertDiskFull(upload, 'media/init on a full disk');
  const chunks = upload.body.ret === 0 ? await Promise.all([0, 1, 2].map((i) => call(url, `/api/media/${upload.body.uploadId}/${i}`, big.subarray(i * CHUNK, (i + 1) * CHUNK), alice.sid, 'PUT'))) : [];
  for (const c of chunks) if (c.body.ret !== 0) assertDiskFull(c, 'a media chunk on a full disk');
  assert.ok(chunks.length === 0 || chunks.some((c) => c.body.ret !== 0), '768 KiB of chunks were refused on a full disk');
  assertDiskFull(await call(url, `/api/media/${pending.body.uploadId}/complete`, {}, alice.sid), 'completing a 512 KiB upload on a full disk');
  assert.deepEqual(tempFiles(fs.dir), [], 'no partial media file left behind');

  // Reads keep working: bob's log (every answered send once), the stored file, an existing session's calls.
  const log = await logOf(url, bob.sid);
  const sentIds = (entries: any[]) => entries.filter((e) => e.kind === 'msg').map((e) => e.clientMsgId).sort();
  assert.deepEqual(sentIds(log), [...answered].sort(), 'every answered send once, nothing refused');
  const got = await call(url, `/api/media/${mediaId}`, undefined, bob.sid, 'GET');
  assert.equal(got.status, 200);
  assert.ok(Buffer.compare(got.body, file) === 0, 'the stored file reads back whole');
  assert.equal((await call(url, '/api/contacts/list', {}, bob.sid)).body.ret, 0);
  const login = await call(url, '/api/login', { username: 'full_bob', password: 'password-full_bob', deviceId: 'dev2' });
  if (login.body.ret !== 0) assertDiskFull(login, 'a new login on a full disk');
  t.diagnostic(`on the full disk: sync ${log.length} entries, media GET ${got.body.length} bytes, a new login answered ret ${login.body.ret} in ${login.ms.toFixed(0)} ms`);

  // Space returns: the same process takes writes again, the refused upload included.
  rmSync(filler);
  const back = await call(url, '/api/sendmsg', { clientMsgId: 'back', to: 'full_bob', type: 1, content: 'space is back' }, alice.sid);
  assert.equal(back.body.ret, 0, JSON.stringify(back.body));
  answered.push('back');
  if (upload.body.ret === 0) {
    for (const [i, c] of chunks.entries()) if (c.body.ret !== 0) assert.equal((await call(url, `/api/media/${upload.body.uploadId}/${i}`, big.subarray(i * CHUNK, (i + 1) * CHUNK), alice.sid, 'PUT')).body.ret, 0);
    assert.equal((await call(url, `/api/media/${upload.body.uploadId}/complete`, {}, alice.sid)).body.ret, 0);
  }
  const photoDone = await call(url, `/api/media/${photoUp.body.uploadId}/complete`, {}, alice.sid);
  assert.deepEqual([photoDone.body.ret, photoDone.body.kind], [0, 'image'], 'the photo refused at complete completes now');
  const completed = await call(url, `/api/media/${pending.body.uploadId}/complete`, {}, alice.sid);
  assert.equal(completed.body.ret, 0, 'the upload refused at complete completes now');
  assert.ok(Buffer.compare((await call(url, `/api/media/${completed.body.mediaId}`, undefined, alice.sid, 'GET')).body, whole) === 0);

  // Nothing committed is damaged: a clean stop, an intact database file, and after a restart every answered send
  // exactly once.
  await server.stop();
  assert.equal(server.child.exitCode, 0, 'the server stopped cleanly (a full disk is not a failed fsync)');
  const db = new Database(join(fs.dir, 'synchat.db'), { readonly: true });
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  db.close();
  server = await spawnServerProcess(env);
  const after = await logOf(server.url, bob.sid);
  assert.deepEqual(sentIds(after), [...answered].sort(), 'after a restart: every answered send once, nothing refused');
}

for (const workers of ['0', '2']) {
  test(`a full disk (SYNCHAT_WORKERS=${workers}): writes answer ret 9 "disk is full" in bounded time, reads keep working, nothing committed is damaged, writes resume when space returns`, (t) => fillAndFree(t, workers));
}

test('acknowledged keys recorded while the disk is full are written once space returns, not dropped', async (t) => {
  const fs = mountTmpfs(8 * MiB);
  if (typeof fs === 'string') {
    t.skip(fs);
    return;
  }
  // No checkpoints: the WAL only grows, so on the full disk every commit needs new space (after a checkpoint a small
  // write may fit in WAL pages it freed).
  let srv = await startServer({ dataDir: fs.dir }, { walCheckpointMs: 0 });
  try {
    const alice = await userDevice(srv.url, 'ack_alice');
    const bob = await userDevice(srv.url, 'ack_bob');
    await befriend(srv.url, alice, bob);
    for (let i = 0; i < 3; i++) assert.equal((await call(srv.url, '/api/sendmsg', { clientMsgId: `a-${i}`, to: 'ack_bob', type: 1, content: 'hi' }, alice.sid)).body.ret, 0);
    const { syncKey } = await syncAll(srv.url, bob.sid);
    const filler = join(fs.dir, 'filler');
    writeFileSync(filler, Buffer.alloc(freeBytes(fs.dir)));
    assertDiskFull(await call(srv.url, '/api/sendmsg', { clientMsgId: 'a-full', to: 'ack_bob', type: 1, content: 'hi' }, alice.sid), 'a send on the full disk');
    // Bob acknowledges his key by presenting it; the flushes of the next seconds fail on the full disk.
    assert.equal((await call(srv.url, '/api/sync', { syncKey }, bob.sid)).body.ret, 0);
    await new Promise((r) => setTimeout(r, 2500));
    const ackedOf = async (url: string) => (await call(url, '/api/sessions', {}, bob.sid)).body.sessions.find((s: any) => s.isCurrent).ackedKey;
    assert.equal(await ackedOf(srv.url), syncKey);
    rmSync(filler);
    await srv.stop();
    srv = await startServer({ dataDir: fs.dir });
    assert.equal(await ackedOf(srv.url), syncKey, 'the acknowledged key reached the database');
  } finally {
    await srv.stop();
    fs.unmount();
  }
});
