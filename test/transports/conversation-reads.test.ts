// The reads added for the WeChat-web gateway and useful to any client (docs/protocol.md "Conversations, group
// members, media of a message, avatars"), against a real server: who may read what, and the order of recent chats.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { api, befriend, startServer, userDevice, type Device, type TestServer } from '../helpers/server.ts';

let srv: TestServer;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});

/** Uploads `bytes` in one chunk and returns its mediaId. */
async function upload(d: Device, bytes: Buffer, mime: string): Promise<string> {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const init = await api(srv.url, '/api/media/init', { size: bytes.length, sha256, mime, chunkSize: 65536 }, d.sid);
  assert.equal(init.body.ret, 0, JSON.stringify(init.body));
  for (const index of init.body.missing) {
    const res = await fetch(`${srv.url}/api/media/${init.body.uploadId}/${index}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${d.sid}` },
      body: new Uint8Array(bytes.subarray(index * 65536, (index + 1) * 65536)),
    });
    assert.equal(res.status, 200);
  }
  const done = await api(srv.url, '/api/media/complete', { uploadId: init.body.uploadId }, d.sid);
  assert.equal(done.body.ret, 0, JSON.stringify(done.body));
  return done.body.mediaId;
}

describe('service calls behind the gateway', () => {
  it('/api/groups/info lists members with shown names for members only; /api/chats lists conversations newest first', async () => {
    const a = await userDevice(srv.url, 'gi_a');
    const b = await userDevice(srv.url, 'gi_b');
    const c = await userDevice(srv.url, 'gi_c');
    await befriend(srv.url, a, b);
    await befriend(srv.url, a, c);
    const g = await api(srv.url, '/api/groups/create', { name: 'Trio', members: ['gi_b'] }, a.sid);
    const info = await api(srv.url, '/api/groups/info', { groupId: g.body.groupId }, b.sid);
    assert.equal(info.body.ret, 0);
    assert.equal(info.body.name, 'Trio');
    assert.equal(info.body.owner, 'gi_a');
    assert.deepEqual(info.body.members, [
      { username: 'gi_a', displayName: 'GI_A' },
      { username: 'gi_b', displayName: 'GI_B' },
    ]);
    assert.equal((await api(srv.url, '/api/groups/info', { groupId: g.body.groupId }, c.sid)).body.ret, 4);
    const m1 = await api(srv.url, '/api/sendmsg', { clientMsgId: 'c1', to: 'gi_c', type: 1, content: 'x' }, a.sid);
    const m2 = await api(srv.url, '/api/sendmsg', { clientMsgId: 'c2', to: g.body.groupId, type: 1, content: 'y' }, a.sid);
    const m3 = await api(srv.url, '/api/sendmsg', { clientMsgId: 'c3', to: 'gi_a', type: 1, content: 'z' }, c.sid);
    const chats = await api(srv.url, '/api/chats', {}, a.sid);
    assert.deepEqual(chats.body.chats.map((x: any) => [x.peer, x.msgId]), [
      ['gi_c', m3.body.msgId],
      [g.body.groupId, m2.body.msgId],
    ]);
    assert.ok(Number(m1.body.msgId) < Number(m3.body.msgId));
    const one = await api(srv.url, '/api/chats', { peer: g.body.groupId }, a.sid);
    assert.deepEqual(one.body.chats.map((x: any) => x.msgId), [m2.body.msgId]);
    assert.deepEqual((await api(srv.url, '/api/chats', { peer: 'gi_b' }, a.sid)).body.chats, []);
  });
});

describe('media of a message, avatars', () => {
  it('/api/media/message answers a participant with the media of the message, and 3 to anyone else or after a recall', async () => {
    const a = await userDevice(srv.url, 'mm_a');
    const b = await userDevice(srv.url, 'mm_b');
    const c = await userDevice(srv.url, 'mm_c');
    await befriend(srv.url, a, b);
    const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#a63' } }).png().toBuffer();
    const mediaId = await upload(a, png, 'image/png');
    const sent = await api(srv.url, '/api/sendmsg', { clientMsgId: 'i1', to: 'mm_b', type: 3, content: '', mediaId }, a.sid);
    const r = await api(srv.url, '/api/media/message', { msgId: sent.body.msgId }, b.sid);
    assert.equal(r.body.ret, 0);
    assert.equal(r.body.mediaId, mediaId);
    assert.equal(r.body.type, 3);
    assert.equal(r.body.kind, 'image');
    assert.equal((await api(srv.url, '/api/media/message', { msgId: sent.body.msgId }, c.sid)).body.ret, 3);
    const text = await api(srv.url, '/api/sendmsg', { clientMsgId: 't1', to: 'mm_b', type: 1, content: 'no media' }, a.sid);
    assert.equal((await api(srv.url, '/api/media/message', { msgId: text.body.msgId }, b.sid)).body.ret, 3);
    await api(srv.url, '/api/revoke', { msgId: sent.body.msgId }, a.sid);
    assert.equal((await api(srv.url, '/api/media/message', { msgId: sent.body.msgId }, b.sid)).body.ret, 3);
  });

  it('/api/avatar renders a 132 px PNG for any user and a group for its members only', async () => {
    const a = await userDevice(srv.url, 'av_a');
    const b = await userDevice(srv.url, 'av_b');
    const c = await userDevice(srv.url, 'av_c');
    await befriend(srv.url, a, b);
    const r = await api(srv.url, '/api/avatar', { peer: 'av_c' }, a.sid);
    assert.equal(r.body.ret, 0);
    assert.equal(r.body.mime, 'image/png');
    const meta = await sharp(Buffer.from(r.body.data, 'base64')).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 132, 132]);
    const g = await api(srv.url, '/api/groups/create', { name: 'Pair', members: ['av_b'] }, a.sid);
    assert.equal((await api(srv.url, '/api/avatar', { peer: g.body.groupId }, b.sid)).body.ret, 0);
    assert.equal((await api(srv.url, '/api/avatar', { peer: g.body.groupId }, c.sid)).body.ret, 4);
    assert.equal((await api(srv.url, '/api/avatar', { peer: 'nobody_at_all' }, a.sid)).body.ret, 3);
  });
});
