// The WeChat-web gateway driven by hand against a real server (docs/webwx.md): the exact texts clients match by
// regex, keys, escaping, dedup, recall, groups, media, and the failures (1101, Uin as a string). Sessions come from
// the native /api/login here; the QR login flow is tested in webwx-login.test.ts and webwx-wechat4u.test.ts.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { skeyOf, userNameOf, peerOf, wxsidOf, sidOfToken, seqOfSynccheckKey, wxText } from '../../src/transports/webwx/codec.ts';
import { createHash } from 'node:crypto';
import { opusWebm } from '../helpers/opus.ts';
import { api, befriend, startServer, syncAll, userDevice, type Device, type TestServer } from '../helpers/server.ts';

const WX = '/cgi-bin/mmwebwx-bin';

let srv: TestServer;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});

/** A webwx client's credentials for a native session. */
function wx(d: Device) {
  return { uin: d.uin, sid: wxsidOf(d.sid), skey: skeyOf(d.sid), userName: userNameOf(d.username) };
}

function baseRequest(d: Device, uin: unknown = d.uin) {
  return { Uin: uin, Sid: wxsidOf(d.sid), Skey: skeyOf(d.sid), DeviceID: 'e' + String(Math.random()).slice(2, 17).padEnd(15, '0') };
}

/** POSTs a webwx JSON body (with no JSON Content-Type, as ItChat sends it) and parses the answer. */
async function post(name: string, body: unknown, query = ''): Promise<any> {
  const res = await fetch(`${srv.url}${WX}/${name}${query}`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify(body) });
  assert.equal(res.status, 200, name);
  return res.json();
}

async function getText(path: string, cookie = ''): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(srv.url + path, { headers: cookie ? { cookie } : {}, redirect: 'manual' });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

async function wxSync(d: Device, key: number): Promise<any> {
  const r = await post('webwxsync', { BaseRequest: baseRequest(d), SyncKey: { Count: 1, List: [{ Key: 1, Val: key }] }, rr: -1 });
  assert.equal(r.BaseResponse.Ret, 0, JSON.stringify(r.BaseResponse));
  return r;
}

async function init(d: Device, uin: unknown = d.uin): Promise<any> {
  return post('webwxinit', { BaseRequest: baseRequest(d, uin) }, '?r=-1&pass_ticket=whatever%2B&lang=zh_CN');
}

describe('webwx mapping rules', () => {
  it('encodes usernames reversibly as @[0-9a-z]+ and tokens from [A-Za-z0-9_@]', () => {
    for (const name of ['abc', 'alice_01', 'z'.repeat(32)]) {
      const u = userNameOf(name);
      assert.match(u, /^@[0-9a-z]+$/);
      assert.equal(peerOf(u, 'me'), name);
    }
    assert.equal(peerOf('@@12', 'me'), '@@12');
    assert.equal(peerOf('filehelper', 'me'), 'me');
    assert.equal(peerOf('@zz', 'me'), undefined);
    const sid = 'ab-cd_ef-ghijklmnopqrstuvwxyz0123456789ABCDE';
    assert.match(wxsidOf(sid), /^[A-Za-z0-9_@]+$/);
    assert.match(skeyOf(sid), /^@crypt_[A-Za-z0-9_@]+$/);
    assert.equal(sidOfToken(wxsidOf(sid)), sid);
    assert.equal(sidOfToken(skeyOf(sid)), sid);
    assert.equal(seqOfSynccheckKey('1_704|2_9|1000_1532127722'), 704);
    assert.equal(wxText('a<b>&c\nd'), 'a&lt;b&gt;&amp;c<br/>d');
  });
});

describe('webwx gateway', () => {
  let alice: Device;
  let bob: Device;
  before(async () => {
    alice = await userDevice(srv.url, 'wx_alice');
    bob = await userDevice(srv.url, 'wx_bob');
    await befriend(srv.url, alice, bob);
  });

  it('answers webwxinit with the user, the key list and InviteStartCount, Uin given as a string', async () => {
    const r = await init(alice, String(alice.uin));
    assert.equal(r.BaseResponse.Ret, 0);
    assert.equal(r.User.UserName, userNameOf('wx_alice'));
    assert.equal(r.User.Uin, alice.uin);
    assert.equal(r.User.NickName, 'WX_ALICE');
    assert.equal(r.InviteStartCount, 40);
    assert.equal(r.SKey, wx(alice).skey);
    const head = (await syncAll(srv.url, alice.sid)).syncKey;
    assert.deepEqual(r.SyncKey.List[0], { Key: 1, Val: head });
    assert.equal(r.SyncKey.Count, r.SyncKey.List.length);
  });

  it('answers Ret 1101 for a session that is not one, and retcode "1101" on synccheck', async () => {
    const bogus = { Uin: alice.uin, Sid: 'NotASessionAtAll0000', Skey: '@crypt_NotASessionAtAll0000', DeviceID: 'e123456789012345' };
    const r = await post('webwxinit', { BaseRequest: bogus });
    assert.equal(r.BaseResponse.Ret, 1101);
    const s = await post('webwxsync', { BaseRequest: bogus, SyncKey: { Count: 1, List: [{ Key: 1, Val: 0 }] } });
    assert.equal(s.BaseResponse.Ret, 1101);
    // A token of no session is "not logged in" (1100, as the native API says it); one that cannot be a token is 1101.
    const c = await getText(`${WX}/synccheck?r=1&skey=%40crypt_NotASessionAtAll0000&sid=NotASessionAtAll0000&uin=${alice.uin}&deviceid=e1&synckey=1_0%7C1000_1`);
    assert.equal(c.text, 'window.synccheck={retcode:"1100",selector:"0"}');
    const bad = await getText(`${WX}/synccheck?r=1&sid=bad%2Btoken&uin=${alice.uin}&synckey=1_0`);
    assert.equal(bad.text, 'window.synccheck={retcode:"1101",selector:"0"}');
    // Sid and Skey of two sessions: refused, not one of them picked.
    const mixed = await post('webwxinit', { BaseRequest: { ...baseRequest(alice), Skey: skeyOf(bob.sid) } });
    assert.equal(mixed.BaseResponse.Ret, 1101);
  });

  it('lists contacts on webwxgetcontact with only skey and the wxsid cookie', async () => {
    const r = await getText(`${WX}/webwxgetcontact?r=1&seq=0&skey=${encodeURIComponent(wx(alice).skey)}`, `wxsid=${wx(alice).sid}; wxuin=${alice.uin}`);
    const body = JSON.parse(r.text);
    assert.equal(body.BaseResponse.Ret, 0);
    assert.equal(body.Seq, 0);
    const b = body.MemberList.find((c: any) => c.UserName === userNameOf('wx_bob'));
    assert.ok(b, 'bob is listed');
    for (const key of ['Sex', 'VerifyFlag', 'MemberList', 'ContactFlag', 'HeadImgUrl']) assert.ok(key in b, key);
  });

  it('long-polls synccheck until a message commits, then webwxsync hands it over escaped, once, acknowledged by the key', async () => {
    const start = (await init(alice)).SyncKey.List[0].Val as number;
    const poll = getText(`${WX}/synccheck?r=1&skey=${encodeURIComponent(wx(alice).skey)}&sid=${wx(alice).sid}&uin=${alice.uin}&deviceid=e1&synckey=1_${start}%7C1000_1`);
    // The poll is parked: nothing to say yet.
    await new Promise((r) => setTimeout(r, 300));
    const sent = await api(srv.url, '/api/sendmsg', { clientMsgId: 'n1', to: 'wx_alice', type: 1, content: 'a<b & c\nline two' }, bob.sid);
    assert.equal(sent.body.ret, 0);
    const c = await poll;
    assert.match(c.text, /^window\.synccheck=\{retcode:"0",selector:"2"\}$/);
    const s = await wxSync(alice, start);
    assert.equal(s.AddMsgCount, s.AddMsgList.length);
    const m = s.AddMsgList.find((x: any) => x.MsgId === sent.body.msgId);
    assert.ok(m, 'the message is in AddMsgList');
    assert.equal(m.FromUserName, userNameOf('wx_bob'));
    assert.equal(m.ToUserName, userNameOf('wx_alice'));
    assert.equal(m.MsgType, 1);
    assert.equal(m.Content, 'a&lt;b &amp; c<br/>line two');
    assert.equal(m.CreateTime, Math.floor(sent.body.createTime / 1000));
    assert.equal(m.NewMsgId, Number(sent.body.msgId));
    assert.deepEqual(s.SyncCheckKey, s.SyncKey);
    for (const key of ['ModContactCount', 'DelContactCount', 'ContinueFlag', 'Profile']) assert.ok(key in s, key);
    // Presenting the new key: nothing more; presenting the old one again: the same message again (its answer was lost).
    const next = s.SyncKey.List[0].Val;
    assert.equal((await wxSync(alice, next)).AddMsgCount, 0);
    assert.ok((await wxSync(alice, start)).AddMsgList.some((x: any) => x.MsgId === sent.body.msgId));
    const now = await getText(`${WX}/synccheck?sid=${wx(alice).sid}&skey=${encodeURIComponent(wx(alice).skey)}&uin=${alice.uin}&synckey=1_${start}`);
    assert.equal(now.text, 'window.synccheck={retcode:"0",selector:"2"}', 'a key behind the head answers at once');
  });

  it('sends once per ClientMsgId, seen by a native device, and recalls with a 10002 to the peer', async () => {
    const key = (await init(bob)).SyncKey.List[0].Val as number;
    const msg = { Type: 1, Content: 'hello from webwx', FromUserName: userNameOf('wx_alice'), ToUserName: userNameOf('wx_bob'), LocalID: 17000000000001234, ClientMsgId: 17000000000001234 };
    const a = await post('webwxsendmsg', { BaseRequest: baseRequest(alice), Msg: msg, Scene: 0 });
    const b = await post('webwxsendmsg', { BaseRequest: baseRequest(alice), Msg: msg, Scene: 0 });
    assert.equal(a.BaseResponse.Ret, 0);
    assert.match(a.MsgID, /^[1-9][0-9]*$/);
    assert.equal(b.MsgID, a.MsgID);
    assert.equal(a.LocalID, '17000000000001234');
    const native = (await syncAll(srv.url, bob.sid)).entries.filter((e) => e.kind === 'msg' && e.msgId === a.MsgID);
    assert.equal(native.length, 1, 'bob has it once');
    assert.equal(native[0].clientMsgId, '17000000000001234');
    assert.equal(native[0].content, 'hello from webwx');

    const r = await post('webwxrevokemsg', { BaseRequest: baseRequest(alice), SvrMsgId: a.MsgID, ToUserName: userNameOf('wx_bob'), ClientMsgId: '17000000000001234' });
    assert.equal(r.BaseResponse.Ret, 0);
    const s = await wxSync(bob, key);
    const recall = s.AddMsgList.find((x: any) => x.MsgType === 10002);
    assert.ok(recall, 'bob gets a 10002');
    assert.equal(recall.FromUserName, userNameOf('wx_alice'));
    assert.match(recall.Content, new RegExp(`&lt;msgid&gt;${a.MsgID}&lt;/msgid&gt;`));
    const again = await post('webwxrevokemsg', { BaseRequest: baseRequest(bob), SvrMsgId: a.MsgID, ToUserName: userNameOf('wx_alice') });
    assert.equal(again.BaseResponse.Ret, -1, 'only the sender may recall');
  });

  it('creates a group, prefixes other members\' messages with @member:<br/>, and lists it in ChatSet', async () => {
    const carol = await userDevice(srv.url, 'wx_carol');
    await befriend(srv.url, alice, carol);
    const created = await post('webwxcreatechatroom', {
      BaseRequest: baseRequest(alice),
      MemberCount: 2,
      MemberList: [{ UserName: userNameOf('wx_bob') }, { UserName: userNameOf('wx_carol') }],
      Topic: '',
    });
    assert.equal(created.BaseResponse.Ret, 0);
    assert.match(created.ChatRoomName, /^@@[1-9][0-9]*$/);
    assert.equal(created.MemberCount, 3);
    const key = (await init(alice)).SyncKey.List[0].Val as number;
    const sent = await api(srv.url, '/api/sendmsg', { clientMsgId: 'g1', to: created.ChatRoomName, type: 1, content: 'hi all' }, bob.sid);
    const s = await wxSync(alice, key);
    const m = s.AddMsgList.find((x: any) => x.MsgId === sent.body.msgId);
    assert.equal(m.FromUserName, created.ChatRoomName);
    assert.equal(m.Content, `${userNameOf('wx_bob')}:<br/>hi all`);
    assert.match(m.Content, /^(@[0-9a-z]*?):<br\/>(.*)$/, "ItChat's regex");
    const batch = await post('webwxbatchgetcontact', { BaseRequest: baseRequest(alice), Count: 1, List: [{ UserName: created.ChatRoomName, EncryChatRoomId: '' }] });
    assert.equal(batch.ContactList[0].MemberCount, 3);
    assert.ok(batch.ContactList[0].MemberList.some((x: any) => x.UserName === userNameOf('wx_bob') && x.NickName === 'WX_BOB'));
    const i = await init(alice);
    assert.equal(i.ChatSet.split(',')[0], created.ChatRoomName, 'the latest conversation first');
    const own = await post('webwxsendmsg', { BaseRequest: baseRequest(alice), Msg: { Type: 1, Content: 'mine', ToUserName: created.ChatRoomName, LocalID: '9', ClientMsgId: '9' } });
    const echo = (await wxSync(alice, key)).AddMsgList.find((x: any) => x.MsgId === own.MsgID);
    assert.equal(echo.FromUserName, userNameOf('wx_alice'));
    assert.equal(echo.Content, 'mine', 'own group messages carry no prefix');
    const upd = await post('webwxupdatechatroom', { BaseRequest: baseRequest(alice), ChatRoomName: created.ChatRoomName, NewTopic: 'Renamed' }, '?fun=modtopic');
    assert.equal(upd.BaseResponse.Ret, 0);
    const mod = await wxSync(alice, i.SyncKey.List[0].Val);
    assert.ok(mod.ModContactList.some((c: any) => c.UserName === created.ChatRoomName && c.NickName === 'Renamed'));
  });

  it('marks a chat read on webwxstatusnotify code 1 (native read marker)', async () => {
    const sent = await api(srv.url, '/api/sendmsg', { clientMsgId: 'r1', to: 'wx_alice', type: 1, content: 'read me' }, bob.sid);
    const key = (await syncAll(srv.url, bob.sid)).syncKey;
    const r = await post('webwxstatusnotify', { BaseRequest: baseRequest(alice), Code: 1, FromUserName: userNameOf('wx_alice'), ToUserName: userNameOf('wx_bob'), ClientMsgId: 1 });
    assert.equal(r.BaseResponse.Ret, 0);
    assert.equal(r.MsgID, sent.body.msgId);
    const receipt = (await syncAll(srv.url, bob.sid, key)).entries.find((e) => e.kind === 'read');
    assert.deepEqual([receipt?.msgId, receipt?.by], [sent.body.msgId, 'wx_alice']);
  });

  it('uploads an image, sends it by MediaId, and serves it by MsgID (and a thumbnail)', async () => {
    const png = await sharp({ create: { width: 320, height: 200, channels: 3, background: '#3a6' } }).png().toBuffer();
    const form = new FormData();
    form.append('name', 'a.png');
    form.append('type', 'image/png');
    form.append('mediatype', 'pic');
    form.append('uploadmediarequest', JSON.stringify({ UploadType: 2, BaseRequest: baseRequest(alice), ClientMediaId: 1, TotalLen: png.length, StartPos: 0, DataLen: png.length, MediaType: 4 }));
    form.append('filename', new Blob([png], { type: 'image/png' }), 'a.png');
    const up = await (await fetch(`${srv.url}${WX}/webwxuploadmedia?f=json`, { method: 'POST', body: form, headers: { cookie: `wxsid=${wx(alice).sid}` } })).json();
    assert.equal(up.BaseResponse.Ret, 0, JSON.stringify(up));
    assert.ok(up.MediaId);
    const sent = await post('webwxsendmsgimg', { BaseRequest: baseRequest(alice), Msg: { Type: 3, MediaId: up.MediaId, Content: '', ToUserName: userNameOf('wx_bob'), LocalID: '77', ClientMsgId: '77' } }, '?fun=async&f=json');
    assert.equal(sent.BaseResponse.Ret, 0, JSON.stringify(sent));
    const full = await fetch(`${srv.url}${WX}/webwxgetmsgimg?MsgID=${sent.MsgID}&skey=${encodeURIComponent(wx(bob).skey)}`);
    assert.equal(full.status, 200);
    const bytes = Buffer.from(await full.arrayBuffer());
    assert.equal((await sharp(bytes).metadata()).width, 320);
    const thumb = await fetch(`${srv.url}${WX}/webwxgetmsgimg?msgid=${sent.MsgID}&type=slave`, { headers: { cookie: `wxsid=${wx(bob).sid}` } });
    assert.equal(thumb.status, 200);
    const stranger = await userDevice(srv.url, 'wx_stranger');
    const refused = await fetch(`${srv.url}${WX}/webwxgetmsgimg?MsgID=${sent.MsgID}&skey=${encodeURIComponent(wx(stranger).skey)}`);
    assert.equal(refused.status, 404);
    const unauth = await fetch(`${srv.url}${WX}/webwxuploadmedia?f=json`, { method: 'POST', body: form });
    assert.equal((await unauth.json()).BaseResponse.Ret, 1101, 'an upload without a session is refused before its body is read');
  });

  it('serves voice as MP3 on webwxgetvoice: Opus in WebM transcoded; a format it cannot read refused with Ret -1', async () => {
    const sendVoice = async (bytes: Buffer, mime: string, clientMsgId: string) => {
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const init = await api(srv.url, '/api/media/init', { size: bytes.length, sha256, mime, chunkSize: 1 << 20 }, alice.sid);
      await fetch(`${srv.url}/api/media/${init.body.uploadId}/0`, { method: 'PUT', headers: { authorization: `Bearer ${alice.sid}` }, body: new Uint8Array(bytes) });
      const done = await api(srv.url, '/api/media/complete', { uploadId: init.body.uploadId }, alice.sid);
      assert.equal(done.body.ret, 0, JSON.stringify(done.body));
      const sent = await api(srv.url, '/api/sendmsg', { clientMsgId, to: 'wx_bob', type: 34, content: '2000', mediaId: done.body.mediaId }, alice.sid);
      assert.equal(sent.body.ret, 0, JSON.stringify(sent.body));
      return sent.body.msgId as string;
    };
    const opus = await sendVoice(await opusWebm(2), 'audio/webm', 'v1');
    const r = await fetch(`${srv.url}${WX}/webwxgetvoice?msgid=${opus}&skey=${encodeURIComponent(wx(bob).skey)}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'audio/mpeg');
    const mp3 = Buffer.from(await r.arrayBuffer());
    // MPEG-1 Layer III frames, 48 kHz mono at 48 kbit/s: sync 0xFFF, then about 2 s of frames.
    assert.deepEqual([mp3[0], mp3[1]! & 0xfe], [0xff, 0xfa]);
    assert.ok(mp3.length > 6000 * 2 && mp3.length < 6000 * 4, `${mp3.length} bytes for 2 s at 48 kbit/s`);
    const s = await wxSync(bob, 0);
    const voice = s.AddMsgList.find((x: any) => x.MsgId === opus);
    assert.deepEqual([voice.MsgType, voice.VoiceLength], [34, 2000]);

    // A WAV (44-byte header, 0.1 s of silence): stored as voice, but not Opus.
    const wav = Buffer.alloc(44 + 1600);
    wav.write('RIFF', 0);
    wav.writeUInt32LE(36 + 1600, 4);
    wav.write('WAVEfmt ', 8);
    wav.writeUInt32LE(16, 16);
    wav.writeUInt16LE(1, 20);
    wav.writeUInt16LE(1, 22);
    wav.writeUInt32LE(8000, 24);
    wav.writeUInt32LE(16000, 28);
    wav.writeUInt16LE(2, 32);
    wav.writeUInt16LE(16, 34);
    wav.write('data', 36);
    wav.writeUInt32LE(1600, 40);
    const other = await sendVoice(wav, 'audio/wav', 'v2');
    const refused = await fetch(`${srv.url}${WX}/webwxgetvoice?msgid=${other}&skey=${encodeURIComponent(wx(bob).skey)}`);
    assert.equal(refused.status, 404);
    const body = await refused.json();
    assert.equal(body.BaseResponse.Ret, -1);
    assert.match(body.BaseResponse.ErrMsg, /audio\/wav.*Opus/);
  });

  it('serves a generated avatar on webwxgeticon', async () => {
    const r = await fetch(`${srv.url}${WX}/webwxgeticon?username=${userNameOf('wx_bob')}&skey=${encodeURIComponent(wx(alice).skey)}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'image/png');
    const meta = await sharp(Buffer.from(await r.arrayBuffer())).metadata();
    assert.equal(meta.width, 132);
  });

  it('answers unsupported calls with an honest Ret -1', async () => {
    const r = await post('webwxsendvideomsg', { BaseRequest: baseRequest(alice), Msg: {} });
    assert.equal(r.BaseResponse.Ret, -1);
    assert.match(r.BaseResponse.ErrMsg, /not supported/);
  });
});
