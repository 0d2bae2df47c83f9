// Image work is bounded (#11): a decompression bomb (huge dimensions in a tiny file) is refused before it is
// decoded, nothing of it is kept, and the server goes on serving; decodes are read from a file, not a buffer.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { api, startServer, userDevice, type Device, type TestServer } from '../helpers/server.ts';

const CHUNK = 64 * 1024;

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const typed = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typed));
  return Buffer.concat([len, typed, crc]);
}

/** A valid PNG header that declares `width`×`height` grey pixels, with one compressed row of data: a few hundred bytes. */
function pngBomb(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 0, 0, 0, 0], 8); // 8-bit greyscale, deflate, no filter, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(width + 1))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

async function upload(srv: TestServer, d: Device, bytes: Buffer, mime: string): Promise<any> {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const init = await api(srv.url, '/api/media/init', { size: bytes.length, sha256, mime, chunkSize: CHUNK }, d.sid);
  assert.equal(init.body.ret, 0, JSON.stringify(init.body));
  for (const i of init.body.missing as number[]) {
    const res = await fetch(`${srv.url}/api/media/${init.body.uploadId}/${i}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${d.sid}` },
      body: bytes.subarray(i * CHUNK, (i + 1) * CHUNK) as Uint8Array<ArrayBuffer>,
    });
    assert.equal((await res.json()).ret, 0);
  }
  const done = await fetch(`${srv.url}/api/media/${init.body.uploadId}/complete`, { method: 'POST', headers: { authorization: `Bearer ${d.sid}` } });
  return done.json();
}

/** Files left under a media subfolder (`content`, `scratch`, `uploads`). */
function filesUnder(srv: TestServer, sub: string): string[] {
  const root = join(srv.dataDir, 'media', sub);
  return existsSync(root) ? readdirSync(root, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name) : [];
}

describe('bounded image work', () => {
  let srv: TestServer;
  let alice: Device;
  before(async () => {
    srv = await startServer();
    alice = await userDevice(srv.url, 'alice');
  });
  after(() => srv.stop());

  it('refuses a decompression bomb (60,000 × 60,000 pixels in a tiny PNG) with ret 1, keeping nothing', async () => {
    const bomb = pngBomb(60_000, 60_000);
    assert.ok(bomb.length < 2048, `${bomb.length} bytes`);
    const answer = await upload(srv, alice, bomb, 'image/png');
    assert.equal(answer.ret, 1);
    assert.match(answer.errMsg, /could not be decoded: .*pixel limit/);
    assert.deepEqual(filesUnder(srv, 'content'), []);
    assert.deepEqual(filesUnder(srv, 'scratch'), []);
    assert.deepEqual(filesUnder(srv, 'uploads'), []);
    // The server goes on: a real image right after is processed.
    const fine = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#3a6' } }).png().toBuffer();
    const ok = await upload(srv, alice, fine, 'image/png');
    assert.equal(ok.ret, 0, JSON.stringify(ok));
    assert.deepEqual([ok.width, ok.height], [640, 480]);
    assert.deepEqual(filesUnder(srv, 'scratch'), []);
  });

  it('keeps a bomb declared as a file as a file, without decoding it', async () => {
    const bomb = pngBomb(60_001, 60_000);
    const answer = await upload(srv, alice, bomb, 'application/octet-stream');
    assert.equal(answer.ret, 0, JSON.stringify(answer));
    assert.equal(answer.kind, 'file');
    assert.equal(answer.size, bomb.length);
  });

  it('answers many images completed at once, each with its thumbnail (decodes wait their turn)', async () => {
    const images = await Promise.all(
      Array.from({ length: 6 }, (_, i) => sharp({ create: { width: 900 + i, height: 700, channels: 3, background: '#a36' } }).jpeg().toBuffer()),
    );
    const answers = await Promise.all(images.map((b) => upload(srv, alice, b, 'image/jpeg')));
    for (const [i, a] of answers.entries()) {
      assert.equal(a.ret, 0, JSON.stringify(a));
      assert.deepEqual([a.width, a.height], [900 + i, 700]);
    }
  });
});
