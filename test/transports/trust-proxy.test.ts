// SYNCHAT_TRUST_PROXY: behind a trusted TLS-terminating proxy, the client's address (what every per-address limit
// counts) comes from X-Forwarded-For — alike for API calls, the long-poll and the /ws upgrade — and from anyone
// else the header is ignored. Two views: a real per-address limit (registrations per address, rate limit on), and
// the address each edge hands the service, recorded by a wrapper around the real service (a seam, not a mock: every
// call goes through to the real ChatService, the wrapper only notes the `ip` it was given).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { FrameDecoder, OP, encodePacket, parseBody } from '../../src/protocol/index.ts';
import type { ChatApi } from '../../src/service/index.ts';
import { buildCore, buildGateway, gatewayDirectory, makeLogger, type Core, type Gateway } from '../../src/server/build-server.ts';
import { ConfigError, loadConfig } from '../../src/server/config.ts';
import { compileTrustProxy } from '../../src/transports/client-address.ts';
import { ConnectionCaps } from '../../src/transports/conn-caps.ts';
import { startServer, userDevice } from '../helpers/server.ts';
import { waitUntil } from '../helpers/wait.ts';

const CLIENT_A = '203.0.113.7';
const CLIENT_B = '198.51.100.23';

/** POSTs JSON with an X-Forwarded-For header. */
async function post(base: string, path: string, body: unknown, forwardedFor?: string): Promise<any> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (forwardedFor) headers['x-forwarded-for'] = forwardedFor;
  const res = await fetch(base + path, { method: 'POST', headers, body: JSON.stringify(body) });
  return res.json();
}

describe('a per-address limit behind a trusted proxy', () => {
  it('counts each forwarded client on its own, and everyone behind an untrusted peer as that peer', async () => {
    const srv = await startServer({ rateLimit: 'on', trustProxy: 'loopback' });
    try {
      // Registrations are limited per address: fill client A's allowance through the "proxy" (this test, on loopback).
      let n = 0;
      let answer: any;
      do answer = await post(srv.url, '/api/register', { username: `xff_a${n++}`, password: 'correct horse battery', displayName: 'A' }, CLIENT_A);
      while (answer.ret === 0 && n < 100);
      assert.equal(answer.ret, 1205, `client A is throttled after ${n - 1} registrations`);
      // Client B behind the same proxy is not.
      assert.equal((await post(srv.url, '/api/register', { username: 'xff_b', password: 'correct horse battery', displayName: 'B' }, CLIENT_B)).ret, 0);
      // A client's own X-Forwarded-For is not believed past the proxy's: only the hop the proxy appended counts.
      assert.equal((await post(srv.url, '/api/register', { username: 'xff_spoof', password: 'correct horse battery', displayName: 'S' }, `${CLIENT_B}, ${CLIENT_A}`)).ret, 1205);
    } finally {
      await srv.stop();
    }
    const direct = await startServer({ rateLimit: 'on', trustProxy: '10.0.0.0/8' });
    try {
      // The peer (127.0.0.1) is not a trusted proxy: a changing X-Forwarded-For does not escape the limit.
      let n = 0;
      let answer: any;
      do answer = await post(direct.url, '/api/register', { username: `xff_d${n}`, password: 'correct horse battery', displayName: 'D' }, `192.0.2.${n++}`);
      while (answer.ret === 0 && n < 100);
      assert.equal(answer.ret, 1205, 'throttled as one address although every request named another');
    } finally {
      await direct.stop();
    }
  });
});

/** A gateway in front of the real service, noting the address every call and attach is given. */
async function recordedServer(trustProxy: string): Promise<{ base: string; httpPort: number; seen: { via: string; ip: string }[]; close(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'synchat-xff-'));
  const config = loadConfig({}, { httpPort: 0, tcpPort: 0, workers: 0, dataDir, logLevel: 'silent', passwordLog2N: 10, rateLimit: 'off', webRoot: '', trustProxy });
  const logger = makeLogger(config, 'test');
  const core: Core = await buildCore(config, logger, gatewayDirectory(config, () => config));
  const seen: { via: string; ip: string }[] = [];
  const api = new Proxy(core.service as ChatApi, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (prop === 'call') return (path: string, body: unknown, ctx: { ip: string }) => (seen.push({ via: path, ip: ctx.ip }), value.call(target, path, body, ctx));
      if (prop === 'attach') return (sid: string, key: number | undefined, ip: string, ...rest: unknown[]) => (seen.push({ via: 'attach', ip }), value.call(target, sid, key, ip, ...rest));
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const gateway: Gateway = await buildGateway(config, api, logger);
  return {
    base: `http://127.0.0.1:${gateway.httpPort}`,
    httpPort: gateway.httpPort,
    seen,
    async close() {
      await gateway.close();
      await core.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Opens /ws with an X-Forwarded-For header and authenticates; resolves with the AUTH answer's ret. */
async function wsAuth(httpPort: number, sid: string, forwardedFor: string): Promise<number> {
  const ws = new WebSocket(`ws://127.0.0.1:${httpPort}/ws`, { headers: { 'x-forwarded-for': forwardedFor } });
  const decoder = new FrameDecoder(1024 * 1024);
  try {
    return await new Promise<number>((resolve, reject) => {
      ws.on('error', reject);
      ws.on('open', () => ws.send(encodePacket(OP.AUTH, 1, { sid }), { binary: true }));
      ws.on('message', (data: Buffer) => {
        for (const p of decoder.push(data).packets) if (p.seq === 1) resolve((parseBody(p.body) as { ret: number }).ret);
      });
    });
  } finally {
    ws.terminate();
  }
}

describe('the address each edge hands the service', () => {
  let trusted: Awaited<ReturnType<typeof recordedServer>>;
  let untrusted: Awaited<ReturnType<typeof recordedServer>>;

  before(async () => {
    trusted = await recordedServer('127.0.0.1, ::1');
    untrusted = await recordedServer('');
  });
  after(async () => {
    await trusted.close();
    await untrusted.close();
  });

  /** Makes a user, then calls, long-polls and opens /ws, each naming `forwardedFor`; returns the addresses seen. */
  async function addressesSeen(srv: typeof trusted, username: string, forwardedFor: string): Promise<Record<string, string>> {
    const device = await userDevice(srv.base, username);
    srv.seen.length = 0;
    await post(srv.base, '/api/contacts/list', {}, forwardedFor);
    const poll = await fetch(`${srv.base}/api/synccheck?syncKey=0&timeout=0`, { headers: { authorization: `Bearer ${device.sid}`, 'x-forwarded-for': forwardedFor } });
    assert.equal((await poll.json()).ret, 0);
    const pollIp = srv.seen.find((s) => s.via === 'attach')?.ip;
    assert.equal(await wsAuth(srv.httpPort, device.sid, forwardedFor), 0);
    await waitUntil(() => srv.seen.filter((s) => s.via === 'attach').length === 2, 'the /ws AUTH reached the service');
    const attaches = srv.seen.filter((s) => s.via === 'attach');
    return { call: srv.seen.find((s) => s.via === '/api/contacts/list')!.ip, longPoll: pollIp!, ws: attaches[1]!.ip };
  }

  it('is the forwarded client for API calls, the long-poll and /ws when the peer is a trusted proxy', async () => {
    assert.deepEqual(await addressesSeen(trusted, 'xff_t', CLIENT_A), { call: CLIENT_A, longPoll: CLIENT_A, ws: CLIENT_A });
  });

  it('is the peer, header ignored, on all three when the peer is not trusted', async () => {
    assert.deepEqual(await addressesSeen(untrusted, 'xff_u', CLIENT_A), { call: '127.0.0.1', longPoll: '127.0.0.1', ws: '127.0.0.1' });
  });
});

/** Opens a raw TCP long connection from `localAddress`, sends HEARTBEAT; resolves with the op of the first answer. */
async function firstAnswerOp(port: number, localAddress: string): Promise<{ op: number; close(): void }> {
  const socket = connect({ host: '127.0.0.1', port, localAddress });
  const decoder = new FrameDecoder(1024 * 1024);
  socket.on('error', () => {});
  socket.on('connect', () => socket.write(encodePacket(OP.HEARTBEAT, 1)));
  const op = await new Promise<number>((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      const p = decoder.push(d).packets[0];
      if (p) resolve(p.op);
    });
    socket.on('close', () => reject(new Error('closed without an answer')));
  });
  return { op, close: () => socket.destroy() };
}

describe('connection caps and a trusted proxy', () => {
  it('holds a trusted proxy only to the total cap, and everyone else to the per-address cap too', () => {
    const caps = new ConnectionCaps({ maxPerAddress: 1, maxTotal: 3, isExempt: (a) => compileTrustProxy('10.0.0.1')(a, 0) });
    assert.deepEqual([caps.admit('10.0.0.1'), caps.admit('10.0.0.1'), caps.admit('10.0.0.1')].map((a) => a?.refusal), [undefined, undefined, undefined]);
    assert.equal(caps.admit('10.0.0.1')?.refusal?.httpStatus, 503, 'the total still binds the proxy');
    const open = new ConnectionCaps({ maxPerAddress: 1, maxTotal: 3, isExempt: (a) => compileTrustProxy('10.0.0.1')(a, 0) });
    assert.equal(open.admit('10.0.0.2')?.refusal, undefined);
    assert.equal(open.admit('10.0.0.2')?.refusal?.httpStatus, 429);
  });

  it('lets the proxy’s address hold more long connections than SYNCHAT_MAX_CONNS_PER_IP, and no other address', async () => {
    const srv = await startServer({ trustProxy: '127.0.0.1', maxConnsPerIp: 1, maxConns: 1000 });
    const held: { close(): void }[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const c = await firstAnswerOp(srv.tcpPort, '127.0.0.1');
        held.push(c);
        assert.equal(c.op, OP.HEARTBEAT_ACK, `connection ${i + 1} from the trusted proxy is served`);
      }
      const first = await firstAnswerOp(srv.tcpPort, '127.0.0.2');
      held.push(first);
      assert.equal(first.op, OP.HEARTBEAT_ACK);
      const second = await firstAnswerOp(srv.tcpPort, '127.0.0.2');
      held.push(second);
      assert.equal(second.op, OP.ERROR, 'a second connection from an untrusted address is over its cap');
    } finally {
      for (const c of held) c.close();
      await srv.stop();
    }
  });
});

describe('SYNCHAT_TRUST_PROXY', () => {
  it('takes addresses, CIDRs and the loopback keyword, and refuses anything else naming the variable', () => {
    assert.equal(loadConfig({ SYNCHAT_TRUST_PROXY: '10.0.0.0/8, 192.168.1.5,loopback,fd00::/8' }).trustProxy, '10.0.0.0/8, 192.168.1.5,loopback,fd00::/8');
    assert.throws(() => loadConfig({ SYNCHAT_TRUST_PROXY: 'proxy.example.com' }), (e: Error) => e instanceof ConfigError && /^SYNCHAT_TRUST_PROXY .*comma list of addresses or CIDRs/.test(e.message));
    assert.throws(() => loadConfig({ SYNCHAT_TRUST_PROXY: '10.0.0.0/33' }), (e: Error) => e instanceof ConfigError && /SYNCHAT_TRUST_PROXY/.test(e.message));
  });
});
