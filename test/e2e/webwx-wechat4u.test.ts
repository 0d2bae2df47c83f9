// An external WeChat-web client against Synchat (docs/webwx.md): the npm package wechat4u 0.7.14, which nobody here
// wrote, with only its base URLs rewritten to this server. Two bots log in through QR uuids that their users' native
// devices scan and confirm (the real QR flow, no backdoor), exchange direct messages, a group message, an image and a
// recall, and native SDK clients in the same conversations see the same messages in the same order, once each.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import type { MsgEntry, RevokeEntry, SynchatClient } from '../../src/sdk/index.ts';
import { userNameOf } from '../../src/transports/webwx/codec.ts';
import { spawnGatewayServer } from '../helpers/process.ts';
import { startServer } from '../helpers/server.ts';
import { befriend, startClient, waitUntil, type TestClient } from '../sdk/helpers.ts';

const require = createRequire(import.meta.url);
// wechat4u is CommonJS (lib/wechat.js, its published build). Loading it adds a process-wide 'uncaughtException'
// listener that only logs, which would hide a crash of this test process: it is taken off again.
const ownListeners = process.listeners('uncaughtException');
const Wechat = require('wechat4u') as new () => Bot;
for (const l of process.listeners('uncaughtException')) if (!ownListeners.includes(l)) process.off('uncaughtException', l);

/** The parts of a wechat4u bot this test uses (its own API, unchanged). */
interface Bot {
  request: (o: { url: unknown } & Record<string, unknown>) => Promise<any>;
  user: { UserName: string; NickName: string };
  contacts: Record<string, any>;
  on(event: string, f: (...args: any[]) => void): void;
  once(event: string, f: (...args: any[]) => void): void;
  setPollingTargetGetter(f: () => string): void;
  start(): Promise<void>;
  stop(): void;
  sendMsg(msg: string | { file: Buffer; filename: string }, to: string): Promise<any>;
  revokeMsg(msgId: string, to: string): Promise<any>;
  createChatroom(topic: string, members: { UserName: string }[]): Promise<any>;
  getMsgImg(msgId: string): Promise<{ data: ArrayBuffer; type: string }>;
}

/** A started bot and everything it received. */
interface RunningBot {
  bot: Bot;
  messages: any[];
  errors: unknown[];
}

/** The server under test: one process, or a core with two gateway processes (the webwx calls cross IPC). */
let srv: { url: string; stop(): Promise<void> };
let bots: Bot[] = [];
let clients: SynchatClient[] = [];

async function stopAll(): Promise<void> {
  for (const b of bots) b.stop();
  for (const c of clients) await c.close();
  bots = [];
  clients = [];
  // The bots' last polls end with the server.
  await srv.stop();
}

async function phone(username: string, deviceId: string): Promise<TestClient> {
  const c = await startClient('ws', srv.url, username, deviceId);
  clients.push(c.client);
  return c;
}

/**
 * Starts a wechat4u bot whose every request goes to this server, and logs it in: its QR uuid is scanned and
 * confirmed by `confirmer`, a native device of the user the bot becomes.
 */
async function startBot(confirmer: SynchatClient): Promise<RunningBot> {
  const bot = new Wechat();
  bots.push(bot);
  const send = bot.request;
  // The only change to the client: its hosts (wx.qq.com, login., webpush., file.) become this server.
  bot.request = (o) => send({ ...o, url: String(o.url).replace(/^https?:\/\/[^/]+/, srv.url) });
  // No "heartbeat" text to filehelper at login and every 5 minutes.
  bot.setPollingTargetGetter(() => '');
  const messages: any[] = [];
  const errors: unknown[] = [];
  bot.on('message', (m) => messages.push(m));
  bot.on('error', (e) => errors.push(e));
  bot.on('uuid', (uuid: string) => {
    void (async () => {
      await confirmer.call('/api/qrlogin/scan', { uuid });
      await confirmer.call('/api/qrlogin/confirm', { uuid });
    })().catch((err) => errors.push(err));
  });
  // A bot that gives up (wechat4u stops and emits logout) fails the test at once, naming what it saw.
  const loggedIn = new Promise<void>((resolve, reject) => {
    bot.once('login', () => resolve());
    bot.once('logout', () => reject(new Error(`the bot stopped before logging in: ${errors.map(String).join('; ')}`)));
  });
  void bot.start();
  await loggedIn;
  return { bot, messages, errors };
}

function found<T>(list: readonly T[], pred: (x: T) => boolean, what: string): Promise<T> {
  return waitUntil(() => list.some(pred), what).then(() => list.find(pred)!);
}

const SERVERS: [string, () => Promise<{ url: string; stop(): Promise<void> }>][] = [
  ['one process', () => startServer()],
  [
    'two gateway processes',
    async () => {
      const g = await spawnGatewayServer('synchat-webwx-');
      return { url: g.url, stop: () => g.stopAndClean() };
    },
  ],
];

for (const [serverName, start] of SERVERS) describe(`wechat4u 0.7.14 against Synchat (${serverName})`, () => {
  before(async () => {
    srv = await start();
  });
  after(() => stopAll());
  let alicePhone: TestClient;
  let bobPhone: TestClient;
  let carol: TestClient;
  let a: RunningBot;
  let b: RunningBot;
  const recalls: RevokeEntry[] = [];

  before(async () => {
    alicePhone = await phone('w4_alice', 'phone');
    bobPhone = await phone('w4_bob', 'phone');
    carol = await phone('w4_carol', 'laptop');
    await befriend(alicePhone.client, bobPhone.client);
    await befriend(alicePhone.client, carol.client);
    await befriend(bobPhone.client, carol.client);
    alicePhone.client.on('recall', (r) => recalls.push(r));
    a = await startBot(alicePhone.client);
    b = await startBot(bobPhone.client);
  });

  it('logs both bots in as the users whose devices confirmed their QR codes', () => {
    assert.equal(a.bot.user.UserName, userNameOf('w4_alice'));
    assert.equal(b.bot.user.UserName, userNameOf('w4_bob'));
    assert.equal(a.bot.user.NickName, 'W4_ALICE');
    assert.ok(a.bot.contacts[userNameOf('w4_bob')], 'alice has bob among her contacts');
  });

  it('exchanges direct messages, an image and a recall, seen by the native devices in the same order', async () => {
    const bobName = userNameOf('w4_bob');
    const aliceName = userNameOf('w4_alice');
    const first = await a.bot.sendMsg('hello from A\nsecond line', bobName);
    const got = await found(b.messages, (m) => m.MsgId === first.MsgID, 'bob bot gets the text');
    assert.equal(got.Content, 'hello from A\nsecond line');
    assert.equal(got.FromUserName, aliceName);
    assert.equal(got.MsgType, 1);

    const reply = await b.bot.sendMsg('hi A', aliceName);
    await found(a.messages, (m) => m.MsgId === reply.MsgID && m.Content === 'hi A', 'alice bot gets the reply');

    const png = await sharp({ create: { width: 240, height: 160, channels: 3, background: '#2a7' } }).png().toBuffer();
    const pic = await a.bot.sendMsg({ file: png, filename: 'pic.png' }, bobName);
    assert.equal(pic.BaseResponse.Ret, 0);
    const img = await found(b.messages, (m) => m.MsgId === pic.MsgID, 'bob bot gets the image');
    assert.equal(img.MsgType, 3);
    const bytes = await b.bot.getMsgImg(img.MsgId);
    assert.match(bytes.type, /^image\//);
    assert.equal((await sharp(Buffer.from(bytes.data)).metadata()).width, 240);

    // Over 512 KiB: wechat4u sends it in chunks, each on a connection of its own (with two gateway processes, not
    // all to the same one).
    const big = await sharp({ create: { width: 700, height: 700, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 60 } } }).png().toBuffer();
    assert.ok(big.length > 1024 * 1024, `${big.length} bytes: at least three chunks`);
    const bigPic = await a.bot.sendMsg({ file: big, filename: 'big.png' }, bobName);
    assert.equal(bigPic.BaseResponse.Ret, 0);
    const bigImg = await found(b.messages, (m) => m.MsgId === bigPic.MsgID, 'bob bot gets the big image');
    assert.equal((await sharp(Buffer.from((await b.bot.getMsgImg(bigImg.MsgId)).data)).metadata()).width, 700);

    const wrong = await a.bot.sendMsg('oops', bobName);
    await found(b.messages, (m) => m.MsgId === wrong.MsgID, 'bob bot gets the wrong message');
    await a.bot.revokeMsg(wrong.MsgID, bobName);
    const recall = await found(b.messages, (m) => m.MsgType === 10002, 'bob bot gets the recall');
    assert.match(recall.Content, new RegExp(`<msgid>${wrong.MsgID}</msgid>`));
    await waitUntil(() => recalls.some((r) => r.msgId === wrong.MsgID), "alice's phone gets the recall");

    // The native devices of both users saw the same conversation: same messages, same order, once each.
    const sent = [first.MsgID, reply.MsgID, pic.MsgID, bigPic.MsgID, wrong.MsgID];
    const inChat = (list: MsgEntry[], peer: string) => list.filter((m) => m.peer === peer).map((m) => m.msgId);
    await waitUntil(() => inChat(bobPhone.messages, 'w4_alice').length >= sent.length, "bob's phone has the conversation");
    await waitUntil(() => inChat(alicePhone.messages, 'w4_bob').length >= sent.length, "alice's phone has the conversation");
    assert.deepEqual(inChat(alicePhone.messages, 'w4_bob'), sent);
    assert.deepEqual(inChat(bobPhone.messages, 'w4_alice'), sent);
    // A bot gets its own sends back too (webwx echoes a user's messages from any device, this one included).
    const botOrder = b.messages.filter((m) => m.MsgType !== 10002 && sent.includes(m.MsgId)).map((m) => m.MsgId);
    assert.deepEqual(botOrder, sent, "bob's bot got the conversation in that order, once each");
    const ids = alicePhone.messages.filter((m) => m.peer === 'w4_bob').map((m) => m.clientMsgId);
    assert.equal(new Set(ids).size, ids.length, 'no message twice');
  });

  it('creates a group whose messages every member sees, the prefix replaced by the sender name', async () => {
    const created = await a.bot.createChatroom('W4 group', [{ UserName: userNameOf('w4_bob') }, { UserName: userNameOf('w4_carol') }]);
    assert.equal(created.BaseResponse.Ret, 0);
    const room: string = created.ChatRoomName;
    assert.match(room, /^@@[0-9]+$/);
    await waitUntil(() => Boolean(b.bot.contacts[room]), "bob's bot learns of the group");
    const fromB = await b.bot.sendMsg('group hello', room);
    const atA = await found(a.messages, (m) => m.MsgId === fromB.MsgID, 'alice bot gets the group message');
    assert.equal(atA.FromUserName, room);
    assert.equal(atA.Content, 'W4_BOB:\ngroup hello', 'wechat4u put the member name in place of @member');
    const fromA = await a.bot.sendMsg('group answer', room);
    await found(b.messages, (m) => m.MsgId === fromA.MsgID, 'bob bot gets the answer');
    const inGroup = (list: MsgEntry[]) => list.filter((m) => m.peer === room).map((m) => m.msgId);
    await waitUntil(() => inGroup(carol.messages).length >= 2, 'carol sees both group messages');
    assert.deepEqual(inGroup(carol.messages), [fromB.MsgID, fromA.MsgID]);
    assert.deepEqual(inGroup(alicePhone.messages), [fromB.MsgID, fromA.MsgID]);
  });

  it('raised no client errors', () => {
    assert.deepEqual([...a.errors, ...b.errors].map(String), []);
  });
});
