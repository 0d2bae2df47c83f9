// Media uploads and reads against a real server with real files on disk (docs/protocol.md "Media").
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { MediaClient, MediaError } from '../../src/sdk/media.ts';
import { api, befriend, startServer, syncAll, userDevice, type Device, type TestServer } from '../helpers/server.ts';

const KiB = 1024;
const CHUNK = 64 * KiB;

function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

async function put(base: string, sid: string, uploadId: string, index: number, bytes: Uint8Array): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}/api/media/${uploadId}/${index}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${sid}`, 'content-type': 'application/octet-stream' },
    body: bytes as Uint8Array<ArrayBuffer>,
  });
  return { status: res.status, body: await res.json() };
}

async function complete(base: string, sid: string, uploadId: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}/api/media/${uploadId}/complete`, { method: 'POST', headers: { authorization: `Bearer ${sid}` } });
  return { status: res.status, body: await res.json() };
}

async function get(base: string, path: string, sid?: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(base + path, { headers: { ...(sid ? { authorization: `Bearer ${sid}` } : {}), ...headers } });
}

function init(base: string, sid: string, bytes: Uint8Array, mime: string, extra: Record<string, unknown> = {}) {
  return api(base, '/api/media/init', { size: bytes.length, sha256: sha(bytes), mime, chunkSize: CHUNK, ...extra }, sid);
}

/** Uploads through the raw HTTP calls, every chunk at once in shuffled order. */
async function uploadRaw(base: string, sid: string, bytes: Uint8Array, mime: string, extra: Record<string, unknown> = {}): Promise<any> {
  const i = await init(base, sid, bytes, mime, extra);
  assert.equal(i.body.ret, 0, JSON.stringify(i.body));
  if (i.body.mediaId) return i.body;
  const order = [...i.body.missing].sort(() => Math.random() - 0.5);
  const puts = await Promise.all(order.map((n: number) => put(base, sid, i.body.uploadId, n, bytes.subarray(n * CHUNK, (n + 1) * CHUNK))));
  for (const p of puts) assert.equal(p.body.ret, 0, JSON.stringify(p.body));
  return (await complete(base, sid, i.body.uploadId)).body;
}

function sdk(srv: TestServer, d: Device): MediaClient {
  return new MediaClient({
    baseUrl: srv.url,
    sid: d.sid,
    chunkSize: CHUNK,
    sendmsg: async (to, type, content, mediaId) => {
      const r = await api(srv.url, '/api/sendmsg', { clientMsgId: randomBytes(8).toString('hex'), to, type, content, mediaId }, d.sid);
      if (r.body.ret !== 0) throw new MediaError(r.body.ret, r.body.errMsg);
      return r.body;
    },
  });
}

async function jpeg(width: number, height: number, withGps = false, orientation?: number): Promise<Buffer> {
  let img = sharp({ create: { width, height, channels: 3, background: { r: 200, g: 30, b: 90 } } }).jpeg();
  if (withGps) img = img.withExif({ IFD0: { Make: 'SecretCam' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 0/1' } });
  if (orientation) img = img.withMetadata({ orientation });
  return img.toBuffer();
}

/** A WebM (EBML) header followed by noise: what a browser's MediaRecorder starts with. */
function webm(bytes: number): Uint8Array {
  const b = randomBytes(bytes);
  b.set([0x1a, 0x45, 0xdf, 0xa3], 0);
  return b;
}

function contentDirs(srv: TestServer): string[] {
  const root = join(srv.dataDir, 'media', 'content');
  if (!existsSync(root)) return [];
  return readdirSync(root).flatMap((xx) => readdirSync(join(root, xx)));
}

let srv: TestServer;
let alice: Device;
let bob: Device;
let carol: Device;
before(async () => {
  srv = await startServer();
  alice = await userDevice(srv.url, 'alice');
  bob = await userDevice(srv.url, 'bob');
  carol = await userDevice(srv.url, 'carol');
  await befriend(srv.url, alice, bob);
});
after(async () => {
  await srv.stop();
});

describe('chunked upload', () => {
  it('accepts chunks in any order and in parallel, and serves back the exact bytes', async () => {
    const bytes = randomBytes(8 * CHUNK + 1234);
    const i = await init(srv.url, alice.sid, bytes, 'application/pdf', { name: 'report.pdf' });
    assert.equal(i.body.ret, 0);
    assert.deepEqual(i.body.missing, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(i.body.mediaId, undefined);
    const order = [8, 3, 0, 5, 7, 1, 6, 2, 4];
    const puts = await Promise.all(order.map((n) => put(srv.url, alice.sid, i.body.uploadId, n, bytes.subarray(n * CHUNK, (n + 1) * CHUNK))));
    for (const p of puts) assert.deepEqual(p.body, { ret: 0 });
    // Idempotent: the same chunk again changes nothing.
    assert.equal((await put(srv.url, alice.sid, i.body.uploadId, 3, bytes.subarray(3 * CHUNK, 4 * CHUNK))).body.ret, 0);
    const c = await complete(srv.url, alice.sid, i.body.uploadId);
    assert.equal(c.body.ret, 0, JSON.stringify(c.body));
    assert.equal(c.body.kind, 'file');
    assert.equal(c.body.size, bytes.length);
    // A repeated complete answers the same media id.
    assert.equal((await complete(srv.url, alice.sid, i.body.uploadId)).body.mediaId, c.body.mediaId);
    const res = await get(srv.url, `/api/media/${c.body.mediaId}`, alice.sid);
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    assert.match(res.headers.get('content-disposition')!, /^attachment; filename="report.pdf"/);
  });

  it('resumes an interrupted upload: same uploadId, only the missing chunks, then completes', async () => {
    const bytes = randomBytes(6 * CHUNK);
    const first = await init(srv.url, alice.sid, bytes, 'application/zip');
    for (const n of [0, 2, 5]) await put(srv.url, alice.sid, first.body.uploadId, n, bytes.subarray(n * CHUNK, (n + 1) * CHUNK));
    // The client went away here; it starts over with the same content.
    const progress: number[] = [];
    const client = sdk(srv, alice);
    const again = await init(srv.url, alice.sid, bytes, 'application/zip');
    assert.equal(again.body.uploadId, first.body.uploadId);
    assert.deepEqual(again.body.missing, [1, 3, 4]);
    const result = await client.upload(bytes, { mime: 'application/zip', concurrency: 2, onProgress: (p) => progress.push(p.sentBytes) });
    assert.equal(result.isInstant, false);
    assert.equal(progress[0], 3 * CHUNK, 'progress starts from what the server already held');
    assert.equal(progress.at(-1), bytes.length);
    const res = await get(srv.url, `/api/media/${result.mediaId}`, alice.sid);
    assert.equal(sha(new Uint8Array(await res.arrayBuffer())), sha(bytes));
  });

  it('refuses a chunk of the wrong length, an index out of range, and another user\'s upload', async () => {
    const bytes = randomBytes(2 * CHUNK + 10);
    const i = await init(srv.url, alice.sid, bytes, 'application/octet-stream');
    const short = await put(srv.url, alice.sid, i.body.uploadId, 0, bytes.subarray(0, 100));
    assert.equal(short.status, 400);
    assert.equal(short.body.ret, 1);
    assert.match(short.body.errMsg, /must be 65536 bytes/);
    assert.equal((await put(srv.url, alice.sid, i.body.uploadId, 3, bytes.subarray(0, 10))).body.ret, 1);
    const stranger = await put(srv.url, carol.sid, i.body.uploadId, 0, bytes.subarray(0, CHUNK));
    assert.equal(stranger.status, 404);
    assert.equal(stranger.body.ret, 3);
    const early = await complete(srv.url, alice.sid, i.body.uploadId);
    assert.equal(early.body.ret, 1);
    assert.deepEqual(early.body.missing, [0, 1, 2]);
  });

  it('discards an upload whose bytes do not match its sha256, storing nothing', async () => {
    const bytes = randomBytes(3 * CHUNK);
    const i = await init(srv.url, alice.sid, bytes, 'application/octet-stream');
    const corrupt = Buffer.from(bytes.subarray(CHUNK, 2 * CHUNK));
    corrupt[100] ^= 0xff;
    await put(srv.url, alice.sid, i.body.uploadId, 0, bytes.subarray(0, CHUNK));
    await put(srv.url, alice.sid, i.body.uploadId, 1, corrupt);
    await put(srv.url, alice.sid, i.body.uploadId, 2, bytes.subarray(2 * CHUNK));
    const before = contentDirs(srv).length;
    const c = await complete(srv.url, alice.sid, i.body.uploadId);
    assert.equal(c.status, 400);
    assert.equal(c.body.ret, 1);
    assert.match(c.body.errMsg, /sha256 mismatch/);
    assert.equal(contentDirs(srv).length, before, 'no content stored');
    assert.ok(!existsSync(join(srv.dataDir, 'media', 'uploads', i.body.uploadId)), 'chunks removed');
    assert.equal((await complete(srv.url, alice.sid, i.body.uploadId)).body.ret, 3);
    // Starting again works and gets a fresh upload.
    const fresh = await init(srv.url, alice.sid, bytes, 'application/octet-stream');
    assert.notEqual(fresh.body.uploadId, i.body.uploadId);
    assert.deepEqual(fresh.body.missing, [0, 1, 2]);
  });

  it('validates init with precise errors', async () => {
    const bad = [
      { size: 10, sha256: 'xyz', mime: 'image/png', chunkSize: CHUNK },
      { size: 10, sha256: sha(randomBytes(4)), mime: 'not a mime', chunkSize: CHUNK },
      { size: 0, sha256: sha(new Uint8Array(0)), mime: 'text/plain', chunkSize: CHUNK },
      { size: 10, sha256: sha(randomBytes(4)), mime: 'text/plain', chunkSize: 100 },
      { size: 10, sha256: sha(randomBytes(4)), mime: 'text/plain' },
    ];
    for (const body of bad) {
      const r = await api(srv.url, '/api/media/init', body, alice.sid);
      assert.equal(r.body.ret, 1, JSON.stringify(body));
      assert.equal(typeof r.body.errMsg, 'string');
    }
    const anonymous = await api(srv.url, '/api/media/init', { size: 10, sha256: sha(randomBytes(4)), mime: 'text/plain', chunkSize: CHUNK });
    assert.equal(anonymous.body.ret, 1100);
  });
});

describe('duplicate content', () => {
  it('completes at once for content the user may read, and tells a stranger nothing', async () => {
    const bytes = randomBytes(2 * CHUNK + 7);
    const a = await uploadRaw(srv.url, alice.sid, bytes, 'application/octet-stream', { name: 'x.bin' });
    const dirs = contentDirs(srv).length;

    // The uploader again: instant, same media id.
    const own = await init(srv.url, alice.sid, bytes, 'application/octet-stream', { name: 'x.bin' });
    assert.deepEqual(own.body.missing, []);
    assert.equal(own.body.mediaId, a.mediaId);

    // A stranger sees exactly what unknown content gets: every chunk missing, no mediaId.
    const stranger = await init(srv.url, carol.sid, bytes, 'application/octet-stream');
    const unknown = await init(srv.url, carol.sid, randomBytes(bytes.length), 'application/octet-stream');
    assert.deepEqual(Object.keys(stranger.body).sort(), Object.keys(unknown.body).sort());
    assert.deepEqual(stranger.body.missing, unknown.body.missing);
    // Having uploaded every chunk, the stranger gets a media id of their own; the content is stored once.
    for (const n of stranger.body.missing) await put(srv.url, carol.sid, stranger.body.uploadId, n, bytes.subarray(n * CHUNK, (n + 1) * CHUNK));
    const c = await complete(srv.url, carol.sid, stranger.body.uploadId);
    assert.equal(c.body.ret, 0);
    assert.notEqual(c.body.mediaId, a.mediaId);
    assert.equal(contentDirs(srv).length, dirs, 'stored once');
    // ... and still cannot read alice's media id.
    const r = await get(srv.url, `/api/media/${a.mediaId}`, carol.sid);
    assert.equal(r.status, 404);

    // Bob receives it from alice, so bob may read it: his init of the same content is instant.
    const send = await api(srv.url, '/api/sendmsg', { clientMsgId: 'dup-1', to: 'bob', type: 49, content: 'x.bin', mediaId: a.mediaId }, alice.sid);
    assert.equal(send.body.ret, 0);
    const forBob = await init(srv.url, bob.sid, bytes, 'application/octet-stream');
    assert.deepEqual(forBob.body.missing, []);
    assert.ok(forBob.body.mediaId);
  });
});

describe('limits and types', () => {
  let small: TestServer;
  let u: Device;
  before(async () => {
    small = await startServer({ mediaMaxFileBytes: 256 * KiB, mediaMaxDailyBytes: 400 * KiB, mediaUploadExpiryMs: 300 });
    u = await userDevice(small.url, 'uploader');
  });
  after(async () => {
    await small.stop();
  });

  it('refuses a file over the per-file limit with ret 5', async () => {
    const r = await init(small.url, u.sid, randomBytes(256 * KiB + 1), 'application/octet-stream');
    assert.equal(r.status, 413);
    assert.equal(r.body.ret, 5);
    assert.match(r.body.errMsg, /limit of 262144 bytes per file/);
  });

  it('refuses a chunk body over the chunk limit with ret 5', async () => {
    const res = await fetch(`${small.url}/api/media/AAAAAAAAAAAAAAAA/0`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${u.sid}` },
      body: new Uint8Array(16 * 1024 * 1024 + 1),
    });
    assert.equal(res.status, 413);
    assert.equal((await res.json()).ret, 5);
  });

  it('refuses uploads past the daily limit per user', async () => {
    assert.equal((await init(small.url, u.sid, randomBytes(200 * KiB), 'application/octet-stream')).body.ret, 0);
    assert.equal((await init(small.url, u.sid, randomBytes(150 * KiB), 'application/octet-stream')).body.ret, 0);
    const over = await init(small.url, u.sid, randomBytes(100 * KiB), 'application/octet-stream');
    assert.equal(over.body.ret, 5);
    assert.match(over.body.errMsg, /daily upload limit/);
  });

  it('removes abandoned uploads and their chunks after the expiry time', async () => {
    const other = await userDevice(small.url, 'abandoner');
    const bytes = randomBytes(2 * CHUNK);
    const i = await init(small.url, other.sid, bytes, 'application/octet-stream');
    await put(small.url, other.sid, i.body.uploadId, 0, bytes.subarray(0, CHUNK));
    const dir = join(small.dataDir, 'media', 'uploads', i.body.uploadId);
    assert.ok(existsSync(dir));
    // What a complete that crashed while it decoded leaves: the upload pending, a scratch copy of its bytes.
    const scratch = join(small.dataDir, 'media', 'scratch', i.body.uploadId);
    mkdirSync(scratch, { recursive: true });
    writeFileSync(join(scratch, 'input'), bytes);
    await new Promise((r) => setTimeout(r, 700));
    const again = await init(small.url, other.sid, bytes, 'application/octet-stream');
    assert.notEqual(again.body.uploadId, i.body.uploadId);
    assert.deepEqual(again.body.missing, [0, 1]);
    assert.ok(!existsSync(dir), 'chunks of the abandoned upload are gone');
    assert.ok(!existsSync(scratch), 'and so are its scratch copies');
  });

  it('refuses bytes that are not an image declared as one, and a non-image sent as type 3', async () => {
    const text = new TextEncoder().encode('this is not a picture at all'.repeat(100));
    const r = await uploadRaw(srv.url, alice.sid, text, 'image/png');
    assert.equal(r.ret, 1);
    assert.match(r.errMsg, /not an image/);
    const file = await uploadRaw(srv.url, alice.sid, text, 'text/plain');
    assert.equal(file.ret, 0);
    const send = await api(srv.url, '/api/sendmsg', { clientMsgId: 'img-1', to: 'bob', type: 3, content: '', mediaId: file.mediaId }, alice.sid);
    assert.equal(send.body.ret, 1);
    assert.match(send.body.errMsg, /needs media that is an image/);
    const voice = await api(srv.url, '/api/sendmsg', { clientMsgId: 'voice-1', to: 'bob', type: 34, content: '1200', mediaId: file.mediaId }, alice.sid);
    assert.equal(voice.body.ret, 1);
  });

  it('refuses a send with an unknown or unreadable mediaId with ret 3', async () => {
    const r = await api(srv.url, '/api/sendmsg', { clientMsgId: 'nomedia', to: 'bob', type: 49, content: 'f', mediaId: 'AAAAAAAAAAAAAAAAAAAAAA' }, alice.sid);
    assert.equal(r.body.ret, 3);
    const mine = await uploadRaw(srv.url, carol.sid, randomBytes(CHUNK), 'application/octet-stream');
    const theft = await api(srv.url, '/api/sendmsg', { clientMsgId: 'theft', to: 'bob', type: 49, content: 'f', mediaId: mine.mediaId }, alice.sid);
    assert.deepEqual(theft.body, r.body);
  });
});

describe('images', () => {
  it('makes a bounded thumbnail and reports width and height', async () => {
    const img = await jpeg(1200, 800);
    const client = sdk(srv, alice);
    const sent = await client.sendImage('bob', img, { mime: 'image/jpeg' });
    assert.equal(sent.kind, 'image');
    assert.equal(sent.width, 1200);
    assert.equal(sent.height, 800);
    const thumb = await get(srv.url, `/api/media/${sent.mediaId}/thumb`, bob.sid);
    assert.equal(thumb.status, 200);
    assert.equal(thumb.headers.get('content-type'), 'image/webp');
    const meta = await sharp(Buffer.from(await thumb.arrayBuffer())).metadata();
    assert.equal(meta.format, 'webp');
    assert.equal(meta.width, 320);
    assert.equal(meta.height, 213);
    const { entries } = await syncAll(srv.url, bob.sid);
    const msg = entries.find((e) => e.kind === 'msg' && e.mediaId === sent.mediaId);
    assert.equal(msg.type, 3);
  });

  it('honours EXIF orientation and strips EXIF and GPS from the original and the thumbnail', async () => {
    const img = await jpeg(600, 400, true, 6);
    assert.ok((await sharp(img).metadata()).exif, 'the upload carries EXIF');
    const r = await uploadRaw(srv.url, alice.sid, img, 'image/jpeg');
    assert.equal(r.ret, 0);
    assert.equal(r.width, 400, 'rotated by orientation 6');
    assert.equal(r.height, 600);
    for (const path of [`/api/media/${r.mediaId}`, `/api/media/${r.mediaId}/thumb`]) {
      const body = Buffer.from(await (await get(srv.url, path, alice.sid)).arrayBuffer());
      const meta = await sharp(body).metadata();
      assert.equal(meta.exif, undefined, path);
      assert.ok(!body.includes(Buffer.from('SecretCam')), path);
      assert.ok((meta.orientation ?? 1) === 1, path);
      assert.ok(meta.height! > meta.width!, `${path} is portrait`);
    }
  });

  it('stores a voice note as uploaded and sends its duration', async () => {
    const note = webm(CHUNK + 99);
    const sent = await sdk(srv, alice).sendVoice('bob', note, 4200);
    const res = await get(srv.url, `/api/media/${sent.mediaId}`, bob.sid);
    assert.equal(res.headers.get('content-type'), 'audio/webm');
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), Buffer.from(note));
    const { entries } = await syncAll(srv.url, bob.sid);
    assert.equal(entries.find((e) => e.mediaId === sent.mediaId).content, '4200');
  });
});

describe('reads', () => {
  let mediaId: string;
  let bytes: Buffer;
  before(async () => {
    bytes = randomBytes(CHUNK + 500);
    const sent = await sdk(srv, alice).sendFile('bob', bytes, '../../naïve "quoted"\r\n;name.txt');
    mediaId = sent.mediaId;
  });

  it('lets the uploader and the conversation read, and answers anyone else like an unknown id', async () => {
    assert.equal((await get(srv.url, `/api/media/${mediaId}`, alice.sid)).status, 200);
    assert.equal((await get(srv.url, `/api/media/${mediaId}`, bob.sid)).status, 200);
    const stranger = await get(srv.url, `/api/media/${mediaId}`, carol.sid);
    const unknown = await get(srv.url, '/api/media/BBBBBBBBBBBBBBBBBBBBBB', carol.sid);
    assert.equal(stranger.status, 404);
    assert.deepEqual(await stranger.json(), await unknown.json());
    const anonymous = await get(srv.url, `/api/media/${mediaId}`);
    assert.equal(anonymous.status, 401);
    assert.equal((await anonymous.json()).ret, 1100);
    const thumb = await get(srv.url, `/api/media/${mediaId}/thumb`, alice.sid);
    assert.equal(thumb.status, 404);
    assert.equal((await thumb.json()).ret, 3);
  });

  it('lets group members read media sent to the group, and not someone removed', async () => {
    await befriend(srv.url, alice, carol);
    const g = await api(srv.url, '/api/groups/create', { name: 'team', members: ['bob', 'carol'] }, alice.sid);
    const file = randomBytes(CHUNK);
    const sent = await sdk(srv, bob).sendFile(g.body.groupId, file, 'plan.txt');
    assert.equal((await get(srv.url, `/api/media/${sent.mediaId}`, carol.sid)).status, 200);
    await api(srv.url, '/api/groups/members', { groupId: g.body.groupId, remove: ['carol'] }, alice.sid);
    assert.equal((await get(srv.url, `/api/media/${sent.mediaId}`, carol.sid)).status, 404);
  });

  it('serves byte ranges, ETag revalidation and safe headers', async () => {
    const r1 = await get(srv.url, `/api/media/${mediaId}`, bob.sid, { range: 'bytes=10-19' });
    assert.equal(r1.status, 206);
    assert.equal(r1.headers.get('content-range'), `bytes 10-19/${bytes.length}`);
    assert.deepEqual(Buffer.from(await r1.arrayBuffer()), bytes.subarray(10, 20));
    const r2 = await get(srv.url, `/api/media/${mediaId}`, bob.sid, { range: 'bytes=-5' });
    assert.deepEqual(Buffer.from(await r2.arrayBuffer()), bytes.subarray(bytes.length - 5));
    const r3 = await get(srv.url, `/api/media/${mediaId}`, bob.sid, { range: `bytes=${CHUNK}-` });
    assert.deepEqual(Buffer.from(await r3.arrayBuffer()), bytes.subarray(CHUNK));
    const r4 = await get(srv.url, `/api/media/${mediaId}`, bob.sid, { range: `bytes=${bytes.length}-` });
    assert.equal(r4.status, 416);
    assert.equal((await r4.json()).ret, 1);
    assert.equal(r4.headers.get('content-range'), `bytes */${bytes.length}`);

    const full = await get(srv.url, `/api/media/${mediaId}`, bob.sid);
    await full.arrayBuffer();
    const etag = full.headers.get('etag')!;
    assert.match(etag, /^"[0-9a-f]{32}-o"$/);
    assert.match(full.headers.get('cache-control')!, /private/);
    assert.equal(full.headers.get('accept-ranges'), 'bytes');
    assert.equal(full.headers.get('x-content-type-options'), 'nosniff');
    const cd = full.headers.get('content-disposition')!;
    assert.ok(!/[\r\n]/.test(cd));
    // No path, no CR/LF, ASCII fallback plus the exact name as RFC 5987.
    assert.equal(cd, `attachment; filename="na_ve _quoted__name.txt"; filename*=UTF-8''na%C3%AFve%20%22quoted%22%3Bname.txt`);
    const cached = await get(srv.url, `/api/media/${mediaId}`, bob.sid, { 'if-none-match': etag });
    assert.equal(cached.status, 304);
  });
});
