// MEDIA_CHUNK over the long connection (TCP and WebSocket) feeds the same upload as HTTP PUT.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { OP, encodeMediaChunk } from '../../src/protocol/index.ts';
import { api, befriend, startServer, syncAll, userDevice, type Device, type TestServer } from '../helpers/server.ts';
import { TRANSPORTS, authedWire } from '../helpers/wire.ts';

const CHUNK = 64 * 1024;

let srv: TestServer;
let alice: Device;
let bob: Device;
before(async () => {
  srv = await startServer();
  alice = await userDevice(srv.url, 'alice');
  bob = await userDevice(srv.url, 'bob');
  await befriend(srv.url, alice, bob);
});
after(async () => {
  await srv.stop();
});

for (const transport of TRANSPORTS) {
  describe(`MEDIA_CHUNK over ${transport}`, () => {
    it('uploads a voice note chunk by chunk, acknowledged like SEND, mixing with HTTP PUT', async () => {
      const note = randomBytes(2 * CHUNK + 300);
      note.set([0x1a, 0x45, 0xdf, 0xa3], 0);
      const sha256 = createHash('sha256').update(note).digest('hex');
      const init = await api(srv.url, '/api/media/init', { size: note.length, sha256, mime: 'audio/webm', chunkSize: CHUNK }, alice.sid);
      assert.deepEqual(init.body.missing, [0, 1, 2]);
      const { client } = await authedWire(transport, srv, alice.sid);
      try {
        for (const i of [2, 0]) {
          const ack = await client.request(OP.MEDIA_CHUNK, encodeMediaChunk(init.body.uploadId, i, note.subarray(i * CHUNK, (i + 1) * CHUNK)));
          assert.equal(ack.op, OP.MEDIA_CHUNK_ACK);
          assert.deepEqual(ack.body, { ret: 0 });
        }
        const resumed = await api(srv.url, '/api/media/init', { size: note.length, sha256, mime: 'audio/webm', chunkSize: CHUNK }, alice.sid);
        assert.deepEqual(resumed.body.missing, [1]);
        const res = await fetch(`${srv.url}/api/media/${init.body.uploadId}/1`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${alice.sid}` },
          body: note.subarray(CHUNK, 2 * CHUNK),
        });
        assert.equal((await res.json()).ret, 0);
        const done = await client.request(OP.CALL, { path: '/api/media/complete', body: { uploadId: init.body.uploadId } });
        assert.equal(done.body.ret, 0, JSON.stringify(done.body));
        assert.equal(done.body.kind, 'voice');
        const sent = await client.request(OP.SEND, { clientMsgId: `v-${transport}`, to: 'bob', type: 34, content: '3100', mediaId: done.body.mediaId });
        assert.equal(sent.body.ret, 0);
        const { entries } = await syncAll(srv.url, bob.sid);
        assert.ok(entries.some((e) => e.mediaId === done.body.mediaId && e.content === '3100'));
      } finally {
        client.close();
      }
    });

    it('answers a malformed or refused chunk with MEDIA_CHUNK_ACK ret != 0 and keeps the connection', async () => {
      const { client } = await authedWire(transport, srv, alice.sid);
      try {
        const short = await client.request(OP.MEDIA_CHUNK, new Uint8Array([0]));
        assert.equal(short.op, OP.MEDIA_CHUNK_ACK);
        assert.equal(short.body.ret, 1);
        const badJson = new Uint8Array([0, 3, 0x7b, 0x7b, 0x7b, 1, 2]);
        assert.equal((await client.request(OP.MEDIA_CHUNK, badJson)).body.ret, 1);
        const unknown = await client.request(OP.MEDIA_CHUNK, encodeMediaChunk('AAAAAAAAAAAAAAAA', 0, new Uint8Array(10)));
        assert.equal(unknown.body.ret, 3);
        const badIndex = await client.request(OP.MEDIA_CHUNK, encodeMediaChunk('AAAAAAAAAAAAAAAA', -1, new Uint8Array(10)));
        assert.equal(badIndex.body.ret, 1);
        assert.equal((await client.request(OP.HEARTBEAT)).op, OP.HEARTBEAT_ACK);
      } finally {
        client.close();
      }
    });
  });
}
