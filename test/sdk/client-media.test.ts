// client.media(): images, voice and files through the SDK client's outbox, received by the peer as messages
// whose media the peer may read.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { SynchatClient } from '../../src/sdk/index.ts';
import { befriend, startServer, userDevice, type TestServer } from '../helpers/server.ts';
import { clientOptions, waitUntil } from './helpers.ts';

let srv: TestServer;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});

test('sends an image, a voice note and a file through the client; the peer receives them and can read the media', async () => {
  const a = await userDevice(srv.url, 'sdkm_alice');
  const b = await userDevice(srv.url, 'sdkm_bob');
  await befriend(srv.url, a, b);
  const alice = new SynchatClient(clientOptions('tcp', srv.url));
  const bob = new SynchatClient(clientOptions('ws', srv.url));
  await alice.login('sdkm_alice', 'password-sdkm_alice', { deviceId: 'sdk' });
  await bob.login('sdkm_bob', 'password-sdkm_bob', { deviceId: 'sdk' });
  const got: any[] = [];
  bob.on('message', (m) => got.push(m));
  await alice.start();
  await bob.start();
  try {
    const png = await sharp({ create: { width: 640, height: 480, channels: 3, background: { r: 10, g: 120, b: 200 } } }).png().toBuffer();
    const progress: number[] = [];
    const media = alice.media({ concurrency: 4, chunkSize: 64 * 1024 });
    const img = await media.sendImage('sdkm_bob', new Uint8Array(png), { mime: 'image/png', onProgress: (p) => progress.push(p.sentBytes) });
    assert.match(img.msgId, /^[0-9]+$/);
    assert.deepEqual([img.width, img.height], [640, 480]);
    assert.equal(progress.at(-1), png.length);
    const voice = await media.sendVoice('sdkm_bob', new Uint8Array(Buffer.from('1A45DFA3' + '00'.repeat(200), 'hex')), 1500, { mime: 'audio/webm' });
    const file = await media.sendFile('sdkm_bob', new TextEncoder().encode('hello, file'), 'notes.txt', { mime: 'text/plain' });
    await waitUntil(() => got.filter((m) => m.from === 'sdkm_alice').length >= 3, 'bob has the three media messages');
    const mine = got.filter((m) => m.from === 'sdkm_alice');
    assert.deepEqual(mine.map((m) => m.type), [3, 34, 49]);
    assert.deepEqual(mine.map((m) => m.msgId), [img.msgId, voice.msgId, file.msgId]);
    assert.equal(mine[1].content, '1500');
    const res = await fetch(`${srv.url}/api/media/${mine[0].mediaId}/thumb`, { headers: { authorization: `Bearer ${bob.sid}` } });
    assert.equal(res.status, 200);
    const res2 = await fetch(`${srv.url}/api/media/${mine[2].mediaId}`, { headers: { authorization: `Bearer ${bob.sid}` } });
    assert.equal(await res2.text(), 'hello, file');
  } finally {
    await alice.close();
    await bob.close();
  }
});
