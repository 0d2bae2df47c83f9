// /api/media/init with uploadId instead of sha256 (docs/protocol.md "Media"): for a client that learns the hash only
// at the end (the WeChat-web gateway's chunked uploads). The upload is named by the client, resumed by every repeat,
// and hashed at complete; nobody else can use the name.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { api, startServer, userDevice, type TestServer } from '../helpers/server.ts';

let srv: TestServer;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});

async function put(sid: string, uploadId: string, index: number, bytes: Uint8Array): Promise<number> {
  const res = await fetch(`${srv.url}/api/media/${uploadId}/${index}`, { method: 'PUT', headers: { authorization: `Bearer ${sid}` }, body: new Uint8Array(bytes) });
  return (await res.json()).ret;
}

describe('named uploads', () => {
  it('resumes by uploadId, computes the hash at complete, answers the mediaId on a repeat, and refuses the name to others', async () => {
    const a = await userDevice(srv.url, 'nu_a');
    const b = await userDevice(srv.url, 'nu_b');
    const png = await sharp({ create: { width: 300, height: 300, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 40 } } }).png().toBuffer();
    const chunkSize = 65536;
    const init = { size: png.length, mime: 'image/png', chunkSize, uploadId: 'named-upload-0001' };
    const first = await api(srv.url, '/api/media/init', init, a.sid);
    assert.equal(first.body.ret, 0, JSON.stringify(first.body));
    assert.equal(first.body.uploadId, 'named-upload-0001');
    const count = Math.ceil(png.length / chunkSize);
    assert.deepEqual(first.body.missing, [...Array(count).keys()]);
    assert.equal(await put(a.sid, init.uploadId, 0, new Uint8Array(png.subarray(0, chunkSize))), 0);
    const again = await api(srv.url, '/api/media/init', init, a.sid);
    assert.deepEqual(again.body.missing, [...Array(count).keys()].slice(1), 'a repeat resumes');
    assert.equal((await api(srv.url, '/api/media/init', init, b.sid)).body.ret, 6, "another user cannot use the name");
    for (let i = 1; i < count; i++) assert.equal(await put(a.sid, init.uploadId, i, new Uint8Array(png.subarray(i * chunkSize, (i + 1) * chunkSize))), 0);
    const done = await api(srv.url, '/api/media/complete', { uploadId: init.uploadId }, a.sid);
    assert.equal(done.body.ret, 0, JSON.stringify(done.body));
    const info = await api(srv.url, '/api/media/info', { mediaId: done.body.mediaId }, a.sid);
    assert.equal(info.body.sha256, createHash('sha256').update(png).digest('hex'));
    const after = await api(srv.url, '/api/media/init', init, a.sid);
    assert.deepEqual([after.body.missing, after.body.mediaId], [[], done.body.mediaId]);
    const both = await api(srv.url, '/api/media/init', { ...init, sha256: info.body.sha256 }, a.sid);
    assert.equal(both.body.ret, 1, 'sha256 or uploadId, not both');
  });
});
