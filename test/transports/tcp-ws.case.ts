// The binary long connection against a live server, the same scenarios over raw TCP and over WebSocket
// (tcp.test.ts and ws.test.ts each run this suite for their transport).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { FrameDecoder, OP, encodePacket } from '../../src/protocol/index.ts';
import { api, befriend, startServer, syncAll, userDevice, type Device, type TestServer } from '../helpers/server.ts';
import { authedWire, connectWire, type WireClient, type WirePacket, type WireTransport } from '../helpers/wire.ts';

const FUZZ_RUNS = Number(process.env.FUZZ_RUNS ?? 40);
/** Bytes the server holds for a connection before its AUTH (docs/protocol.md "Timeouts and errors"). */
const MAX_BYTES_BEFORE_AUTH = 4 * 1024;

function header(len: number, headerLen: number, version: number, op: number, seq: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(len, 0);
  b.writeUInt16BE(headerLen, 4);
  b.writeUInt16BE(version, 6);
  b.writeUInt32BE(op, 8);
  b.writeUInt32BE(seq, 12);
  return b;
}

function text(to: string, content: string, clientMsgId = `c-${Math.random().toString(36).slice(2)}`) {
  return { clientMsgId, to, type: 1, content };
}

/** Round trip on the connection: everything the server queued for it before this point has arrived. */
async function settle(c: WireClient): Promise<void> {
  const r = await c.request(OP.HEARTBEAT);
  assert.equal(r.op, OP.HEARTBEAT_ACK);
}

/**
 * A device that follows the protocol: applies PUSHed entries that directly follow its key, syncs on NOTIFY,
 * pages while continueFlag. Records every entry it was given so tests can check "never twice, never missing".
 */
class Follower {
  key: number;
  readonly seqs: number[] = [];
  readonly entries: any[] = [];
  readonly violations: string[] = [];
  #syncing = false;
  #isStopped = false;
  constructor(
    readonly client: WireClient,
    key: number,
  ) {
    this.key = key;
    void this.#loop();
  }
  stop(): void {
    this.#isStopped = true;
  }
  #take(entries: any[]): void {
    for (const e of entries) {
      this.seqs.push(e.seq);
      this.entries.push(e);
    }
  }
  async #loop(): Promise<void> {
    while (!this.#isStopped && !this.client.isClosed) {
      let p: WirePacket;
      try {
        p = await this.client.next((x) => x.op === OP.PUSH || x.op === OP.NOTIFY || x.op === OP.SYNC_RESP, 'PUSH/NOTIFY/SYNC_RESP');
      } catch {
        return;
      }
      if (p.op === OP.PUSH) {
        if (p.seq !== 0) this.violations.push(`PUSH with seq ${p.seq}`);
        if (p.body.entries[0].seq !== this.key + 1) this.violations.push(`PUSH of ${p.body.entries[0].seq} after key ${this.key}`);
        this.#take(p.body.entries);
        this.key = p.body.syncKey;
      } else if (p.op === OP.NOTIFY) {
        if (!this.#syncing && p.body.syncKey > this.key) this.#sync();
      } else {
        if (p.body.ret !== 0) this.violations.push(`SYNC_RESP ${JSON.stringify(p.body)}`);
        this.#take(p.body.entries);
        this.key = p.body.syncKey;
        this.#syncing = false;
        if (p.body.continueFlag) this.#sync();
      }
    }
  }
  #sync(): void {
    this.#syncing = true;
    this.client.send(OP.SYNC, { syncKey: this.key, limit: 7 });
  }
  /** Waits until the follower's key reaches `head`. */
  async reach(head: number): Promise<void> {
    for (let i = 0; i < 1500 && this.key < head; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(this.violations, []);
    assert.equal(this.key, head, `follower reached ${this.key}, expected ${head}`);
  }
}

/** Runs the whole suite over one transport. */
export function runLongConnectionSuite(transport: WireTransport): void {
  let srv: TestServer;
  let n = 0;
  const uname = (base: string) => `${base}_${transport}_${++n}`;

  before(async () => {
    srv = await startServer({ sqliteSynchronous: 'OFF' });
  });
  after(async () => {
    await srv.stop();
  });

  async function pair(): Promise<[Device, Device]> {
    const a = await userDevice(srv.url, uname('a'));
    const b = await userDevice(srv.url, uname('b'));
    await befriend(srv.url, a, b);
    return [a, b];
  }

  describe(`${transport}: auth`, () => {
    it('answers AUTH with AUTH_OK carrying uin, the head, epoch and heartbeatMs', async () => {
      const [a] = await pair();
      const head = (await syncAll(srv.url, a.sid)).syncKey;
      const { client, authOk } = await authedWire(transport, srv, a.sid, 0);
      assert.deepEqual(authOk, { ret: 0, uin: a.uin, syncKey: head, epoch: a.epoch, heartbeatMs: srv.config.heartbeatMs });
      client.close();
    });

    it('answers a bad sid with ERROR 1100 and closes', async () => {
      const c = await connectWire(transport, srv);
      const seq = c.send(OP.AUTH, { sid: 'not-a-session' });
      const e = await c.nextOp(OP.ERROR);
      assert.equal(e.seq, seq);
      assert.equal(e.body.ret, 1100);
      assert.equal(typeof e.body.errMsg, 'string');
      await c.waitClosed();
    });

    it('answers a malformed AUTH body with ERROR 1 and closes', async () => {
      for (const body of ['{not json', { sid: 5 }, { sid: 'x', syncKey: -1 }, [1, 2]]) {
        const c = await connectWire(transport, srv);
        c.send(OP.AUTH, body);
        const e = await c.nextOp(OP.ERROR);
        assert.equal(e.body.ret, 1, JSON.stringify(body));
        await c.waitClosed();
      }
    });

    it('accepts HEARTBEAT before AUTH but refuses any request with ERROR 1100 and closes', async () => {
      const [a, b] = await pair();
      const c = await connectWire(transport, srv);
      await settle(c);
      c.send(OP.SEND, text(b.username, 'too early'));
      const e = await c.nextOp(OP.ERROR);
      assert.equal(e.body.ret, 1100);
      await c.waitClosed();
      assert.equal((await syncAll(srv.url, a.sid)).entries.filter((x) => x.kind === 'msg').length, 0);
    });

    it('refuses a packet too big to be an AUTH before AUTH with ERROR 5 and closes, without waiting for the rest of it', async () => {
      const c = await connectWire(transport, srv);
      await settle(c);
      // Declares a 512 KiB packet and sends 8 KiB of it: no AUTH is that big, so the server does not hold it.
      c.sendRaw(Buffer.concat([header(512 * 1024, 16, 1, OP.AUTH, 1), Buffer.alloc(8 * 1024, 0x20)]));
      const e = await c.nextOp(OP.ERROR);
      assert.equal(e.body.ret, 5);
      assert.match(e.body.errMsg, /AUTH comes first/);
      await c.waitClosed();
    });

    if (transport === 'ws') {
      // One WebSocket message is one chunk for the server, so every packet below is queued before the attach can
      // answer (over TCP the kernel may split the write and the attach may answer in between).
      it('refuses more than 256 KiB pipelined behind AUTH with ERROR 5 and closes', async () => {
        const [a] = await pair();
        const c = await connectWire(transport, srv);
        const padded = encodePacket(OP.SYNC, 2, { syncKey: 0, pad: 'x'.repeat(40 * 1024) });
        c.sendRaw(Buffer.concat([encodePacket(OP.AUTH, 1, { sid: a.sid }), ...Array.from({ length: 8 }, () => padded)]));
        const e = await c.nextOp(OP.ERROR);
        assert.equal(e.body.ret, 5);
        assert.match(e.body.errMsg, /bytes before AUTH_OK/);
        await c.waitClosed();
      });
    }

    it('runs requests pipelined behind AUTH in the same write and answers each on its seq', async () => {
      const [a, b] = await pair();
      const c = await connectWire(transport, srv);
      c.sendRaw(Buffer.concat([encodePacket(OP.AUTH, 1, { sid: a.sid, syncKey: 0 }), encodePacket(OP.SEND, 2, text(b.username, 'pipelined')), encodePacket(OP.SYNC, 3, { syncKey: 0 })]));
      const ok = await c.next((p) => p.seq === 1);
      assert.equal(ok.op, OP.AUTH_OK);
      const ack = await c.next((p) => p.seq === 2);
      assert.equal(ack.op, OP.SEND_ACK);
      assert.equal(ack.body.ret, 0);
      const resp = await c.next((p) => p.seq === 3);
      assert.equal(resp.op, OP.SYNC_RESP);
      assert.equal(resp.body.ret, 0);
      assert.ok(resp.body.entries.some((e: any) => e.kind === 'contact'));
      c.close();
    });

    it('decodes packets split into single bytes and coalesced into one write', async () => {
      const [a] = await pair();
      const c = await connectWire(transport, srv);
      const bytes = Buffer.concat([encodePacket(OP.AUTH, 7, { sid: a.sid }), encodePacket(OP.HEARTBEAT, 8), encodePacket(OP.HEARTBEAT, 9)]);
      for (const byte of bytes) c.sendRaw(Buffer.from([byte]));
      assert.equal((await c.next((p) => p.seq === 7)).op, OP.AUTH_OK);
      assert.equal((await c.next((p) => p.seq === 8)).op, OP.HEARTBEAT_ACK);
      assert.equal((await c.next((p) => p.seq === 9)).op, OP.HEARTBEAT_ACK);
      c.close();
    });
  });

  describe(`${transport}: send, push and notify`, () => {
    it('answers SEND with SEND_ACK on the same seq, and a repeat with duplicate: true', async () => {
      const [a, b] = await pair();
      const { client } = await authedWire(transport, srv, a.sid, 0);
      const body = text(b.username, 'hello', 'same-id');
      const r1 = await client.request(OP.SEND, body);
      assert.equal(r1.op, OP.SEND_ACK);
      assert.equal(r1.body.ret, 0);
      assert.match(r1.body.msgId, /^[1-9][0-9]*$/);
      assert.equal(r1.body.duplicate, false);
      const r2 = await client.request(OP.SEND, { ...body, content: 'changed' });
      assert.equal(r2.op, OP.SEND_ACK);
      assert.deepEqual({ ...r2.body, duplicate: false }, r1.body);
      assert.equal(r2.body.duplicate, true);
      const bobs = (await syncAll(srv.url, b.sid)).entries.filter((e) => e.kind === 'msg');
      assert.equal(bobs.length, 1);
      client.close();
    });

    it('answers a SEND with bad JSON or a bad body on SEND_ACK with ret 1, and stays open', async () => {
      const [a, b] = await pair();
      const { client } = await authedWire(transport, srv, a.sid, 0);
      const r1 = await client.request(OP.SEND, '{"clientMsgId":');
      assert.equal(r1.op, OP.SEND_ACK);
      assert.equal(r1.body.ret, 1);
      const r2 = await client.request(OP.SEND, { clientMsgId: 'x', to: b.username, type: 1 });
      assert.equal(r2.op, OP.SEND_ACK);
      assert.equal(r2.body.ret, 1);
      assert.match(r2.body.errMsg, /content/);
      const r3 = await client.request(OP.SEND, { ...text(b.username, 'system'), type: 10000 });
      assert.equal(r3.body.ret, 1);
      await settle(client);
      client.close();
    });

    it('PUSHes a message to the sender, its other device and the peer when they are caught up', async () => {
      const [a, b] = await pair();
      const a2 = await userDevice(srv.url, a.username, 'dev2');
      const keyA = (await syncAll(srv.url, a.sid)).syncKey;
      const keyB = (await syncAll(srv.url, b.sid)).syncKey;
      const ca = (await authedWire(transport, srv, a.sid, keyA)).client;
      const ca2 = (await authedWire(transport, srv, a2.sid, keyA)).client;
      const cb = (await authedWire(transport, srv, b.sid, keyB)).client;
      const ack = await ca.request(OP.SEND, text(b.username, 'pushed'));
      assert.equal(ack.body.ret, 0);
      for (const [c, key] of [[ca, keyA], [ca2, keyA], [cb, keyB]] as const) {
        const p = await c.nextOp(OP.PUSH);
        assert.equal(p.seq, 0);
        assert.equal(p.body.entries.length, 1);
        const e = p.body.entries[0];
        assert.equal(e.seq, key + 1);
        assert.equal(p.body.syncKey, key + 1);
        assert.equal(e.kind, 'msg');
        assert.equal(e.msgId, ack.body.msgId);
        assert.equal(e.content, 'pushed');
        assert.equal(e.from, a.username);
      }
      assert.equal(ack.body.seq, keyA + 1);
      for (const c of [ca, ca2, cb]) {
        await settle(c);
        assert.equal(c.received.filter((p) => p.op === OP.NOTIFY).length, 0);
        c.close();
      }
    });

    it('NOTIFYs a device that is behind, once until its key moves; SYNC then moves the key and PUSH resumes', async () => {
      const [a, b] = await pair();
      const { client: cb, authOk } = await authedWire(transport, srv, b.sid, 0);
      assert.ok(authOk.syncKey > 0, 'the contact entry is ahead of key 0');
      await api(srv.url, '/api/sendmsg', text(b.username, 'one'), a.sid);
      await api(srv.url, '/api/sendmsg', text(b.username, 'two'), a.sid);
      // AUTH_OK already told the head: news while behind gets no NOTIFY until the key moves.
      await settle(cb);
      assert.equal(cb.received.filter((p) => p.op === OP.NOTIFY || p.op === OP.PUSH).length, 0);
      const s = await cb.request(OP.SYNC, { syncKey: 0 });
      assert.equal(s.op, OP.SYNC_RESP);
      assert.equal(s.body.ret, 0);
      assert.deepEqual(s.body.entries.filter((e: any) => e.kind === 'msg').map((e: any) => e.content), ['one', 'two']);
      // Caught up: the next one is pushed.
      await api(srv.url, '/api/sendmsg', text(b.username, 'three'), a.sid);
      const p = await cb.nextOp(OP.PUSH);
      assert.equal(p.body.entries[0].content, 'three');
      assert.equal(p.body.entries[0].seq, s.body.syncKey + 1);
      cb.close();
    });

    it('NOTIFYs with the selector once the device acknowledged a key behind the head', async () => {
      const [a, b] = await pair();
      const head0 = (await syncAll(srv.url, b.sid)).syncKey;
      const { client: cb } = await authedWire(transport, srv, b.sid, head0);
      await api(srv.url, '/api/sendmsg', text(b.username, 'x1'), a.sid);
      const p = await cb.nextOp(OP.PUSH);
      assert.equal(p.body.syncKey, head0 + 1);
      await api(srv.url, '/api/sendmsg', text(b.username, 'x2'), a.sid);
      const p2 = await cb.nextOp(OP.PUSH);
      assert.equal(p2.body.entries[0].seq, head0 + 2);
      cb.close();
      // A device that is behind, after an ACK that moves its key but not to the head, gets one NOTIFY.
      const { client: c2 } = await authedWire(transport, srv, b.sid, head0);
      await settle(c2);
      c2.send(OP.ACK, { syncKey: head0 + 1 });
      const note = await c2.nextOp(OP.NOTIFY);
      assert.equal(note.seq, 0);
      assert.equal(note.body.syncKey, head0 + 2);
      assert.equal(note.body.selector & 1, 1);
      await api(srv.url, '/api/sendmsg', text(b.username, 'x3'), a.sid);
      await settle(c2);
      assert.equal(c2.received.filter((x) => x.op === OP.NOTIFY).length, 1, 'once until the key moves');
      c2.send(OP.ACK, { syncKey: head0 + 3 });
      await api(srv.url, '/api/sendmsg', text(b.username, 'x4'), a.sid);
      const p4 = await c2.nextOp(OP.PUSH);
      assert.equal(p4.body.entries[0].content, 'x4');
      c2.close();
    });

    it('refuses an ACK ahead of the head or with a bad body with ERROR 1 and stays open', async () => {
      const [, b] = await pair();
      const { client, authOk } = await authedWire(transport, srv, b.sid, 0);
      for (const body of [{ syncKey: authOk.syncKey + 5 }, { syncKey: 'x' }, '{']) {
        const seq = client.send(OP.ACK, body);
        const e = await client.nextOp(OP.ERROR);
        assert.equal(e.seq, seq);
        assert.equal(e.body.ret, 1);
      }
      await settle(client);
      assert.equal(client.isClosed, false);
      client.close();
    });

    it('never gives a device an entry twice within a connection during a burst, and misses none', async () => {
      const [a, b] = await pair();
      const { client, authOk } = await authedWire(transport, srv, b.sid, 0);
      const f = new Follower(client, 0);
      client.send(OP.SYNC, { syncKey: 0, limit: 7 });
      const sends = [];
      for (let i = 0; i < 60; i++) {
        sends.push(api(srv.url, '/api/sendmsg', text(b.username, `burst ${i}`), a.sid));
        if (i % 10 === 9) await Promise.all(sends.splice(0));
      }
      await Promise.all(sends);
      const { syncKey: head, entries } = await syncAll(srv.url, b.sid);
      await f.reach(head);
      f.stop();
      assert.equal(new Set(f.seqs).size, f.seqs.length, 'no entry twice');
      assert.deepEqual([...f.seqs].sort((x, y) => x - y), entries.map((e) => e.seq));
      assert.ok(authOk.syncKey >= 1);
      assert.ok(client.received.some((p) => p.op === OP.PUSH), 'some entries were pushed');
      client.close();
    });

    it('misses nothing across a reconnect in the middle of a burst when it AUTHs with its key', async () => {
      const [a, b] = await pair();
      const first = (await authedWire(transport, srv, b.sid, 0)).client;
      const f1 = new Follower(first, 0);
      first.send(OP.SYNC, { syncKey: 0, limit: 7 });
      const burst = (from: number, to: number) => Promise.all(Array.from({ length: to - from }, (_, i) => api(srv.url, '/api/sendmsg', text(b.username, `m${from + i}`), a.sid)));
      await burst(0, 20);
      const mid = burst(20, 40);
      await new Promise((r) => setTimeout(r, 5));
      f1.stop();
      first.close();
      const keyAtDrop = f1.key;
      await mid;
      await burst(40, 50);
      const second = (await authedWire(transport, srv, b.sid, keyAtDrop)).client;
      const f2 = new Follower(second, keyAtDrop);
      second.send(OP.SYNC, { syncKey: keyAtDrop, limit: 7 });
      await burst(50, 60);
      const { syncKey: head, entries } = await syncAll(srv.url, b.sid);
      await f2.reach(head);
      f2.stop();
      const got = [...f1.seqs.filter((s) => s <= keyAtDrop), ...f2.seqs];
      assert.deepEqual(got.sort((x, y) => x - y), entries.map((e) => e.seq));
      second.close();
    });
  });

  describe(`${transport}: CALL`, () => {
    it('reaches HTTP calls with the same validation and errors', async () => {
      const [a, b] = await pair();
      const { client } = await authedWire(transport, srv, a.sid, 0);
      const call = async (path: string, body?: unknown) => {
        const r = await client.request(OP.CALL, { path, body });
        assert.equal(r.op, OP.CALL_RESP);
        return r.body;
      };
      const contacts = await call('/api/contacts/list', {});
      assert.equal(contacts.ret, 0);
      assert.ok(JSON.stringify(contacts).includes(b.username));
      assert.equal((await call('/api/users/lookup', { username: b.username })).ret, 0);
      assert.equal((await call('/api/users/lookup', { username: 'no_such_user_zz' })).ret, 3);
      const bad = await call('/api/sendmsg', { clientMsgId: 'k', to: b.username, type: 1, content: 'x', extra: 1 });
      assert.equal(bad.ret, 1);
      assert.match(bad.errMsg, /extra/);
      // The same answers as over HTTP, errors included.
      for (const [path, body] of [
        ['/api/sendmsg', text('stranger_zz', 'x', 'fixed-id')],
        ['/api/sendmsg', { clientMsgId: 'k', to: b.username, type: 1, content: 5 }],
        ['/api/groups/create', { name: '', members: [] }],
        ['/api/revoke', { msgId: '123456' }],
        ['/api/nope', {}],
      ] as const) {
        const viaCall = await call(path, body);
        const viaHttp = (await api(srv.url, path, body, a.sid)).body;
        assert.notEqual(viaCall.ret, 0, path);
        // An unknown path's errMsg names the route over HTTP and the call over CALL; the code is the same.
        if (path === '/api/nope') assert.equal(viaCall.ret, viaHttp.ret);
        else assert.deepEqual(viaCall, viaHttp, path);
      }
      const sent = await call('/api/sendmsg', text(b.username, 'via call'));
      assert.equal(sent.ret, 0);
      const sync = await call('/api/sync', { syncKey: 0 });
      assert.equal(sync.ret, 0);
      assert.ok(sync.entries.some((e: any) => e.content === 'via call'));
      const check = await call('/api/synccheck', { syncKey: 0 });
      assert.deepEqual(Object.keys(check).sort(), ['epoch', 'ret', 'selector', 'syncKey']);
      assert.equal(check.ret, 0);
      assert.equal(check.syncKey, sync.syncKey);
      assert.ok(check.selector & 1);
      assert.equal((await call('/api/synccheck', { syncKey: sync.syncKey })).selector, 0);
      assert.equal((await call('/api/synccheck', { syncKey: sync.syncKey + 9 })).ret, 1);
      assert.equal((await call('/api/synccheck', { syncKey: 'x' })).ret, 1);
      const gws = await call('/api/gateways');
      assert.ok(gws.gateways.some((g: any) => g.transport === 'tcp' && g.url === `tcp://127.0.0.1:${srv.tcpPort}`));
      assert.ok(gws.gateways.some((g: any) => g.transport === 'ws' && g.url === `ws://127.0.0.1:${srv.httpPort}/ws`));
      for (const body of [{ body: {} }, { path: 5 }, '[']) {
        const r = await client.request(OP.CALL, body);
        assert.equal(r.op, OP.CALL_RESP);
        assert.equal(r.body.ret, 1);
      }
      client.close();
    });

    it('answers an unknown op with ERROR 1 on its seq and stays open', async () => {
      const [a] = await pair();
      const { client } = await authedWire(transport, srv, a.sid);
      for (const op of [77, OP.PUSH, OP.AUTH]) {
        const seq = client.send(op, op === OP.AUTH ? { sid: a.sid } : undefined);
        const e = await client.nextOp(OP.ERROR);
        assert.equal(e.seq, seq);
        assert.equal(e.body.ret, 1);
      }
      await settle(client);
      client.close();
    });
  });

  describe(`${transport}: sessions ending`, () => {
    it('sends ERROR 1101 and closes when the same device logs in again', async () => {
      const [a] = await pair();
      const { client } = await authedWire(transport, srv, a.sid, 0);
      await userDevice(srv.url, a.username, 'dev1');
      const e = await client.nextOp(OP.ERROR);
      assert.equal(e.body.ret, 1101);
      assert.equal(e.seq, 0);
      await client.waitClosed();
    });

    it('sends ERROR 1101 and closes when another device revokes the session', async () => {
      const [a] = await pair();
      const other = await userDevice(srv.url, a.username, 'phone');
      const { client } = await authedWire(transport, srv, a.sid, 0);
      const list = await api(srv.url, '/api/sessions', {}, other.sid);
      const mine = list.body.sessions.find((s: any) => s.deviceId === 'dev1');
      assert.equal((await api(srv.url, '/api/sessions/revoke', { sessionId: mine.sessionId }, other.sid)).body.ret, 0);
      const e = await client.nextOp(OP.ERROR);
      assert.equal(e.body.ret, 1101);
      await client.waitClosed();
    });

    it('closes with ERROR 1100 after a logout through CALL', async () => {
      const [a] = await pair();
      const { client } = await authedWire(transport, srv, a.sid, 0);
      client.send(OP.CALL, { path: '/api/logout', body: {} });
      const e = await client.nextOp(OP.ERROR);
      assert.equal(e.body.ret, 1100);
      await client.waitClosed();
    });
  });

  describe(`${transport}: framing errors and garbage`, () => {
    const cases: [string, Buffer][] = [
      ['a header length other than 16', header(32, 20, 1, OP.HEARTBEAT, 1)],
      ['a version other than 1', header(16, 16, 2, OP.HEARTBEAT, 1)],
      ['a packet length below 16', header(8, 16, 1, OP.HEARTBEAT, 1)],
      ['a packet length above the limit', header(2 * 1024 * 1024, 16, 1, OP.SEND, 1)],
    ];
    for (const [what, bytes] of cases) {
      it(`answers ${what} with ERROR 1 and closes`, async () => {
        const c = await connectWire(transport, srv);
        await settle(c);
        c.sendRaw(bytes);
        const e = await c.nextOp(OP.ERROR);
        assert.equal(e.body.ret, 1);
        assert.match(e.body.errMsg, /framing error/);
        await c.waitClosed();
        assert.equal(c.received.at(-1)!.op, OP.ERROR, 'ERROR is the last packet');
      });
    }

    if (transport === 'ws') {
      it('answers a text message with ERROR 1 and closes', async () => {
        // The wire client sends binary only: a raw ws sends text.
        const { default: WebSocket } = await import('ws');
        const ws = new WebSocket(`ws://127.0.0.1:${srv.httpPort}/ws`);
        await new Promise((r) => ws.once('open', r));
        const got: Buffer[] = [];
        ws.on('message', (d: Buffer) => got.push(d));
        ws.send('not binary');
        await new Promise((r) => ws.once('close', r));
        const dec = new FrameDecoder();
        const { packets } = dec.push(Buffer.concat(got));
        assert.equal(packets.at(-1)!.op, OP.ERROR);
      });
    }

    it('survives random bytes from many connections and still serves afterwards', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.uint8Array({ minLength: 16, maxLength: 300 }),
            // A valid header with a random op and body: exercises dispatch before AUTH.
            fc.tuple(fc.integer({ min: 0, max: 300 }), fc.uint8Array({ maxLength: 200 })).map(([op, body]) => encodePacket(op, 1, body)),
            // A valid header that declares more than follows: the server must hold the partial packet.
            fc
              .tuple(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 16 + 200 + 16 + 1, max: 1024 * 1024 }), fc.uint8Array({ maxLength: 200 }))
              .map(([op, length, body]) => Buffer.concat([header(length, 16, 1, op, 1), body])),
          ),
          async (bytes) => {
            const c = await connectWire(transport, srv);
            c.sendRaw(bytes);
            c.sendRaw(encodePacket(OP.HEARTBEAT, 4242));
            // What the server's decoder sees, mirrored: does it reach an error or a refused packet?
            const mirror = new FrameDecoder(srv.config.maxPacketBytes);
            const r = mirror.push(Buffer.concat([bytes, encodePacket(OP.HEARTBEAT, 4242)]));
            const isRefused = r.error !== undefined || r.packets.some((p) => p.op !== OP.HEARTBEAT);
            if (isRefused) {
              await c.waitClosed();
              assert.equal(c.received.at(-1)?.op, OP.ERROR);
            } else if (mirror.pendingBytes === 0) {
              await c.next((p) => p.seq === 4242);
            } else {
              // A packet cut short (our HEARTBEAT is inside it), under the 4 KiB held before AUTH: the server holds
              // it, answers nothing and keeps the connection, while serving others.
              assert.ok(mirror.pendingBytes <= MAX_BYTES_BEFORE_AUTH);
              const other = await connectWire(transport, srv);
              await settle(other);
              other.close();
              assert.deepEqual([c.received, c.isClosed], [[], false], 'a partial packet is held, not answered or closed');
            }
            c.close();
          },
        ),
        { numRuns: FUZZ_RUNS },
      );
      const [a, b] = await pair();
      const { client } = await authedWire(transport, srv, a.sid, 0);
      assert.equal((await client.request(OP.SEND, text(b.username, 'still here'))).body.ret, 0);
      client.close();
      assert.equal((await api(srv.url, '/api/users/lookup', { username: b.username }, a.sid)).body.ret, 0);
    });

    it('holds a packet cut short up to 4 KiB before AUTH and answers it once the rest arrives; past 4 KiB, ERROR 5 and a close', async () => {
      /** Sends the first `at` bytes of a HEARTBEAT with `bodyBytes` of body, then (if still open) the rest. */
      const cutShort = async (bodyBytes: number, at: number) => {
        const packet = encodePacket(OP.HEARTBEAT, 4242, new Uint8Array(bodyBytes).fill(0x61));
        assert.ok(at >= 1 && at < packet.length, 'cut short');
        const c = await connectWire(transport, srv);
        c.sendRaw(packet.subarray(0, at));
        if (at > MAX_BYTES_BEFORE_AUTH) {
          await c.waitClosed();
          assert.deepEqual([c.received.at(-1)?.op, c.received.at(-1)?.body.ret], [OP.ERROR, 5], `${at} bytes held before AUTH`);
          return;
        }
        // Another connection's round trip: the cut packet has reached the server by now, and is held unanswered.
        const other = await connectWire(transport, srv);
        await settle(other);
        other.close();
        assert.deepEqual([c.received, c.isClosed], [[], false], `${at} of ${packet.length} bytes are held`);
        c.sendRaw(packet.subarray(at));
        assert.equal((await c.next((p) => p.seq === 4242)).op, OP.HEARTBEAT_ACK);
        c.close();
      };
      // The edges: inside the header, the header alone, the most held, the first byte too many.
      for (const [bodyBytes, at] of [[0, 15], [100, 16], [6000, MAX_BYTES_BEFORE_AUTH], [6000, MAX_BYTES_BEFORE_AUTH + 1], [6000, 6015]]) {
        await cutShort(bodyBytes!, at!);
      }
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 6000 }), fc.integer({ min: 1, max: 6015 }), (bodyBytes, at) => cutShort(bodyBytes, Math.min(at, 16 + bodyBytes - 1))),
        { numRuns: FUZZ_RUNS },
      );
    });
  });

  describe(`${transport}: backpressure`, () => {
    let slow: TestServer;
    before(async () => {
      slow = await startServer({ sqliteSynchronous: 'OFF', outboundBufferBytes: 64 * 1024 });
    });
    after(async () => {
      await slow.stop();
    });

    it('stops pushing to a reader that does not read, keeps its buffer bounded, and NOTIFYs once it drains', async () => {
      const a = await userDevice(slow.url, uname('a'));
      const b = await userDevice(slow.url, uname('b'));
      await befriend(slow.url, a, b);
      const key0 = (await syncAll(slow.url, b.sid)).syncKey;
      const { client } = await authedWire(transport, slow, b.sid, key0);
      const conn = () => slow.connections.list().find((c) => c.sessionId && c.uin === b.uin)!;
      client.pause();
      const big = 'x'.repeat(15 * 1024);
      let sent = 0;
      // Chat at the slow reader until the server has given up pushing to it: its key stays while the head moves on
      // by 100 or more. (A lag seen between a commit and its push is not backpressure: count only the final lag.)
      while (conn().head - conn().key < 100 && sent < 3000) {
        await Promise.all(Array.from({ length: 25 }, () => api(slow.url, '/api/sendmsg', text(b.username, big), a.sid)));
        sent += 25;
        const c = conn();
        // Pushes stop at the soft bound; only small packets (NOTIFY, HEARTBEAT_ACK) may go past it.
        assert.ok(c.bufferedBytes <= slow.config.outboundBufferBytes + 1024, `buffered ${c.bufferedBytes}`);
      }
      const stats = slow.connections.stats();
      assert.ok(stats.peakBufferedBytes <= slow.config.outboundBufferBytes + 1024, `peak ${stats.peakBufferedBytes}`);
      assert.ok(conn().head - conn().key >= 100, 'pushing stopped');
      // It reads again: the pushes already queued arrive, then one NOTIFY, and a sync fetches the rest.
      const f = new Follower(client, key0);
      client.resume();
      const head = (await syncAll(slow.url, b.sid)).syncKey;
      await f.reach(head);
      f.stop();
      assert.equal(f.seqs.length, sent);
      assert.equal(new Set(f.seqs).size, sent);
      assert.equal(client.received.filter((p) => p.op === OP.NOTIFY).length, 1);
      client.close();
    });
  });
}

/** Timeouts need short settings: their own server. */
export function runTimeoutSuite(transport: WireTransport): void {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ heartbeatMs: 1000, authTimeoutMs: 500 });
  });
  after(async () => {
    await srv.stop();
  });

  describe(`${transport}: timeouts`, () => {
    it('closes a connection that does not AUTH in time, with ERROR 1100', async () => {
      const c = await connectWire(transport, srv);
      await c.waitClosed();
      assert.equal(c.received.at(-1)?.op, OP.ERROR);
      assert.equal(c.received.at(-1)?.body.ret, 1100);
    });

    it('keeps a heartbeating connection open and closes it once heartbeats stop', async () => {
      const d = await userDevice(srv.url, `hb_${transport}`);
      const { client, authOk } = await authedWire(transport, srv, d.sid, 0);
      assert.equal(authOk.heartbeatMs, 1000);
      // Heartbeats every 300 ms for 4 idle periods' worth: the server must keep it.
      for (let i = 0; i < 12; i++) {
        await settle(client);
        await new Promise((r) => setTimeout(r, 300));
      }
      assert.equal(client.isClosed, false);
      await client.waitClosed();
      const last = client.received.at(-1)!;
      assert.equal(last.op, OP.ERROR);
      assert.equal(last.body.ret, 1);
    });
  });
}
