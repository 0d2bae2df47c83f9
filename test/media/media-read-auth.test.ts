// Who may read an image's metadata (POST /api/media/info) and its thumbnail (GET /api/media/<id>/thumb), against
// a real server: the uploader and the current members of a conversation where it was sent; anyone else, a member
// who left included, gets ret 3 exactly as for an unknown id (docs/protocol.md "Media", "Reads").
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { MediaClient, MediaError } from '../../src/sdk/media.ts';
import { api, befriend, startServer, syncAll, userDevice, type Device, type TestServer } from '../helpers/server.ts';

const UNKNOWN_ID = 'BBBBBBBBBBBBBBBBBBBBBB';

let srv: TestServer;
before(async () => (srv = await startServer()));
after(() => srv.stop());

function media(d: Device): MediaClient {
  return new MediaClient({
    baseUrl: srv.url,
    sid: d.sid,
    chunkSize: 64 * 1024,
    sendmsg: async (to, type, content, mediaId) => {
      const r = await api(srv.url, '/api/sendmsg', { clientMsgId: randomBytes(8).toString('hex'), to, type, content, mediaId }, d.sid);
      if (r.body.ret !== 0) throw new MediaError(r.body.ret, r.body.errMsg);
      return r.body;
    },
  });
}

/** A distinct JPEG each call (the colour), so no two tests share content. */
let shade = 0;
function image(): Promise<Buffer> {
  shade += 7;
  return sharp({ create: { width: 640, height: 480, channels: 3, background: { r: shade % 256, g: 90, b: 30 } } }).jpeg().toBuffer();
}

/** What `d` gets for the media's info and thumbnail: both bodies with the HTTP statuses. */
async function reads(mediaId: string, d: Device) {
  const info = await api(srv.url, '/api/media/info', { mediaId }, d.sid);
  const res = await fetch(`${srv.url}/api/media/${mediaId}/thumb`, { headers: { authorization: `Bearer ${d.sid}` } });
  const thumb = res.status === 200 ? { status: 200, mime: res.headers.get('content-type'), bytes: (await res.arrayBuffer()).byteLength } : { status: res.status, body: await res.json() };
  return { info: { status: info.status, body: info.body }, thumb };
}

/** Asserts that `d` may read the image: its info, with a thumbnail, and the thumbnail's bytes. */
async function assertReads(mediaId: string, d: Device, who: string): Promise<void> {
  const r = await reads(mediaId, d);
  assert.equal(r.info.body.ret, 0, `${who}: info ${JSON.stringify(r.info.body)}`);
  assert.deepEqual([r.info.body.mediaId, r.info.body.kind, r.info.body.width, r.info.body.height], [mediaId, 'image', 640, 480], who);
  assert.equal(r.thumb.status, 200, `${who}: thumb ${JSON.stringify(r.thumb)}`);
  assert.deepEqual([r.thumb.mime, r.thumb.bytes], [r.info.body.thumb.mime, r.info.body.thumb.size], `${who}: the thumb info describes`);
}

/** Asserts that `d` is answered exactly as for an unknown id, on both reads. */
async function assertRefused(mediaId: string, d: Device, who: string): Promise<void> {
  const r = await reads(mediaId, d);
  const unknown = await reads(UNKNOWN_ID, d);
  assert.deepEqual(r.info, { status: 404, body: { ret: 3, errMsg: 'no such media' } }, `${who}: info`);
  assert.deepEqual(r.info, unknown.info, `${who}: info as for an unknown id`);
  assert.equal(r.thumb.status, 404, `${who}: thumb`);
  assert.deepEqual(r.thumb, unknown.thumb, `${who}: thumb as for an unknown id`);
}

describe('media info and thumbnail authorization', () => {
  it('in a direct chat: the uploader and the peer read; a stranger, a contact of the uploader included, gets ret 3', async () => {
    const [alice, bob, carol] = await Promise.all(['ma_alice', 'ma_bob', 'ma_carol'].map((n) => userDevice(srv.url, n)));
    await befriend(srv.url, alice, bob);
    await befriend(srv.url, alice, carol);
    const { mediaId } = await media(alice).sendImage(bob.username, await image(), { mime: 'image/jpeg' });
    await assertReads(mediaId, alice, 'the uploader');
    await assertReads(mediaId, bob, 'the peer');
    await assertRefused(mediaId, carol, "the uploader's other contact");
    // Forwarded by the peer to that contact: a conversation where it was sent, so she reads it now.
    await befriend(srv.url, bob, carol);
    const fwd = await api(srv.url, '/api/sendmsg', { clientMsgId: 'fwd-1', to: carol.username, type: 3, content: '', mediaId }, bob.sid);
    assert.equal(fwd.body.ret, 0, JSON.stringify(fwd.body));
    await assertReads(mediaId, carol, 'the one it was forwarded to');
  });

  it('before it is sent only the uploader reads it', async () => {
    const [dan, eve] = await Promise.all(['ma_dan', 'ma_eve'].map((n) => userDevice(srv.url, n)));
    await befriend(srv.url, dan, eve);
    const { mediaId } = await media(dan).upload(await image(), { mime: 'image/jpeg' });
    await assertReads(mediaId, dan, 'the uploader');
    await assertRefused(mediaId, eve, 'a contact it was not sent to');
  });

  it('in a group: members read; a member who left or was removed gets ret 3, and the uploader who left still reads', async () => {
    const [owner, up, stay, quit, outsider] = await Promise.all(['mg_owner', 'mg_up', 'mg_stay', 'mg_quit', 'mg_out'].map((n) => userDevice(srv.url, n)));
    for (const d of [up, stay, quit, outsider]) await befriend(srv.url, owner, d);
    const g = await api(srv.url, '/api/groups/create', { name: 'pics', members: [up.username, stay.username, quit.username] }, owner.sid);
    const groupId = g.body.groupId;
    const { mediaId } = await media(up).sendImage(groupId, await image(), { mime: 'image/jpeg' });
    for (const [who, d] of [['the uploader', up], ['the owner', owner], ['a member', stay], ['a member about to leave', quit]] as const) await assertReads(mediaId, d, who);
    await assertRefused(mediaId, outsider, "a contact of every member, not in the group");

    assert.equal((await api(srv.url, '/api/groups/members', { groupId, remove: [quit.username] }, quit.sid)).body.ret, 0);
    await assertRefused(mediaId, quit, 'a member who left');
    assert.ok((await syncAll(srv.url, quit.sid)).entries.some((e) => e.mediaId === mediaId), 'who left still has the message in their log');
    assert.equal((await api(srv.url, '/api/groups/members', { groupId, remove: [up.username] }, owner.sid)).body.ret, 0);
    await assertReads(mediaId, up, 'the uploader, removed from the group');
    await assertReads(mediaId, stay, 'a member, after others left');
  });

  it('a block changes nothing: the blocked sender reads what it uploaded, the blocker reads what it was sent before', async () => {
    const [fay, gus] = await Promise.all(['mb_fay', 'mb_gus'].map((n) => userDevice(srv.url, n)));
    await befriend(srv.url, fay, gus);
    const before = await media(gus).sendImage(fay.username, await image(), { mime: 'image/jpeg' });
    assert.equal((await api(srv.url, '/api/contacts/block', { username: gus.username }, fay.sid)).body.ret, 0);
    await assertReads(before.mediaId, fay, 'the blocker, for what came before the block');
    const during = await media(gus).upload(await image(), { mime: 'image/jpeg' });
    await assertReads(during.mediaId, gus, 'the blocked uploader');
    await assertRefused(during.mediaId, fay, 'the blocker, for what was not sent to her');
  });
});
