// Connection caps per address and per process across HTTP, WS and TCP; slow-header and slow-body HTTP clients;
// a readable 413; the /ws Origin check (docs/protocol.md "Connection limits"). Real servers, raw sockets.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as connectTls, type TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { FrameDecoder, OP, parseBody } from '../../src/protocol/index.ts';
import { makeDevCert, type DevCert } from '../../scripts/dev-cert.ts';
import { ConfigError, loadConfig } from '../../src/server/config.ts';
import { ConnectionCaps, MAX_REFUSING, addressKey } from '../../src/transports/conn-caps.ts';
import { api, startServer, userDevice, type TestServer } from '../helpers/server.ts';
import { waitUntil } from '../helpers/wait.ts';
import { connectWire } from '../helpers/wire.ts';

/** A raw socket to `port` from `localAddress`, collecting what it reads; `closed` resolves with all of it. */
function rawSocket(port: number, localAddress = '127.0.0.1'): { socket: Socket; text: () => string; closed: Promise<string> } {
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  let got = '';
  socket.on('data', (d) => (got += d.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise<string>((resolve) => socket.once('close', () => resolve(got)));
  return { socket, text: () => got, closed };
}

/** The status line and JSON body of one raw HTTP answer. */
function parseAnswer(raw: string): { status: number; headers: string; body: any } {
  const at = raw.indexOf('\r\n\r\n');
  assert.ok(at > 0, `no HTTP answer in ${JSON.stringify(raw.slice(0, 200))}`);
  const head = raw.slice(0, at);
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1]), headers: head.toLowerCase(), body: JSON.parse(raw.slice(at + 4)) };
}

/** Opens /ws with these headers: the HTTP status of a refused upgrade and its JSON body, or 101. */
function upgrade(port: number, headers: Record<string, string> = {}, localAddress?: string): Promise<{ status: number; body?: any; ws?: WebSocket }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers, perMessageDeflate: false, ...(localAddress ? { localAddress } : {}) });
    ws.once('open', () => resolve({ status: 101, ws }));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    ws.once('error', reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('ConnectionCaps', () => {
  test('addressKey: IPv4 as is (also IPv6-mapped), IPv6 by its /64', () => {
    assert.equal(addressKey('203.0.113.7'), '203.0.113.7');
    assert.equal(addressKey('::ffff:203.0.113.7'), '203.0.113.7');
    assert.equal(addressKey('2001:db8:0:1:aaaa::1'), '2001:db8:0:1::/64');
    assert.equal(addressKey('2001:DB8:0:1:ffff:ffff:ffff:ffff'), '2001:db8:0:1::/64');
    assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(addressKey('::1'), '0:0:0:0::/64');
    assert.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  });

  test('counts per address and in all; release counts once; refusals are bounded', () => {
    const caps = new ConnectionCaps({ maxPerAddress: 2, maxTotal: 3 });
    const a1 = caps.admit('10.0.0.1')!;
    const a2 = caps.admit('::ffff:10.0.0.1')!;
    assert.equal(a1.refusal, undefined);
    assert.equal(a2.refusal, undefined);
    const a3 = caps.admit('10.0.0.1')!;
    assert.equal(a3.refusal?.httpStatus, 429);
    assert.equal(a3.refusal?.ret, 1205);
    const b1 = caps.admit('10.0.0.2')!;
    assert.equal(b1.refusal, undefined);
    const b2 = caps.admit('10.0.0.2')!;
    assert.equal(b2.refusal?.httpStatus, 503);
    assert.deepEqual([caps.total, caps.refusing, caps.countOf('10.0.0.1')], [3, 2, 2]);
    a1.release();
    a1.release();
    a3.release();
    assert.deepEqual([caps.total, caps.refusing, caps.countOf('10.0.0.1')], [2, 1, 1]);
    for (const h of [a2, b1, b2]) h.release();
    assert.deepEqual([caps.total, caps.refusing, caps.countOf('10.0.0.1')], [0, 0, 0]);

    const full = new ConnectionCaps({ maxPerAddress: 1, maxTotal: 1 });
    full.admit('10.0.0.1');
    const refused = Array.from({ length: MAX_REFUSING }, () => full.admit('10.0.0.1')!);
    assert.ok(refused.every((h) => h.refusal !== undefined));
    assert.equal(full.admit('10.0.0.1'), undefined, 'past MAX_REFUSING a socket is dropped');
    refused[0]!.release();
    assert.ok(full.admit('10.0.0.1')?.refusal);
  });
});

describe('connection caps over HTTP, WS and TCP', () => {
  // fetch keeps its sockets open for the server's keep-alive timeout (75 s): each test has a server of its own,
  // where the one fetch it makes is refused (Connection: close), so that every slot is seen released.
  let srv: TestServer;
  let full: TestServer;
  before(async () => {
    srv = await startServer({ maxConnsPerIp: 3, maxConns: 1000 });
    full = await startServer({ maxConnsPerIp: 3, maxConns: 5 });
  });
  after(async () => {
    await srv.stop();
    await full.stop();
  });

  test('one address holds at most maxConnsPerIp across transports; the next gets ret 1205 on each, readably', async () => {
    // Three from 127.0.0.1: a TCP long connection, a WebSocket, an HTTP keep-alive socket that was answered.
    const tcp = await connectWire('tcp', srv);
    const ws = await connectWire('ws', srv);
    const http = rawSocket(srv.httpPort);
    http.socket.write('GET /api/gateways HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitUntil(() => http.text().includes('"gateways"'), 'the keep-alive socket was answered');
    assert.equal(srv.caps.countOf('127.0.0.1'), 3);

    // A fourth TCP connection: ERROR {ret:1205}, then closed.
    const tcp4 = await connectWire('tcp', srv);
    const err = await tcp4.nextOp(OP.ERROR);
    assert.equal(err.body.ret, 1205);
    assert.match(err.body.errMsg, /too many connections from your address \(at most 3\)/);
    await tcp4.waitClosed();

    // A fourth HTTP socket: its request is answered 429 {ret:1205} and the socket closed.
    const http4 = rawSocket(srv.httpPort);
    http4.socket.write('POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}');
    const a4 = parseAnswer(await http4.closed);
    assert.equal(a4.status, 429);
    assert.equal(a4.body.ret, 1205);
    assert.match(a4.headers, /connection: close/);

    // fetch and a fourth WebSocket alike.
    const f = await api(srv.url, '/api/gateways');
    assert.deepEqual([f.status, f.body.ret], [429, 1205]);
    const u = await upgrade(srv.httpPort);
    assert.deepEqual([u.status, u.body.ret], [429, 1205]);

    // Another address is not held back by this one.
    const other = rawSocket(srv.httpPort, '127.0.0.2');
    other.socket.write('GET /api/gateways HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(parseAnswer(await other.closed).status, 200);

    // Each close path gives its slot back once: the client ends TCP, the server fails a WebSocket (text frame),
    // the HTTP socket is destroyed.
    tcp.close();
    ws.sendRaw(new Uint8Array(16).fill(0xff)); // not a packet header: ERROR, then the server closes
    http.socket.destroy();
    assert.equal((await ws.nextOp(OP.ERROR)).body.ret, 1);
    await ws.waitClosed();
    await waitUntil(() => srv.caps.total === 0 && srv.caps.refusing === 0, 'every slot released');

    // So the address may hold three again.
    const again = await Promise.all([connectWire('tcp', srv), connectWire('tcp', srv), connectWire('ws', srv)]);
    for (const c of again) assert.equal((await c.request(OP.HEARTBEAT)).op, OP.HEARTBEAT_ACK);
    assert.equal(srv.caps.countOf('127.0.0.1'), 3);
    for (const c of again) c.close();
    await waitUntil(() => srv.caps.total === 0, 'released again');
    assert.equal(srv.caps.countOf('127.0.0.1'), 0);
  });

  test('the process holds at most maxConns from all addresses: 503 over HTTP, ERROR 1205 over TCP', async () => {
    const held = await Promise.all([connectWire('tcp', full), connectWire('tcp', full), connectWire('tcp', full)]);
    const sockets = ['127.0.0.2', '127.0.0.3'].map((a) => rawSocket(full.httpPort, a));
    for (const s of sockets) s.socket.write('GET /api/gateways HTTP/1.1\r\nHost: x\r\n\r\n');
    await Promise.all(sockets.map((s) => waitUntil(() => s.text().includes('"gateways"'), 'answered')));
    assert.equal(full.caps.total, 5);

    const late = rawSocket(full.httpPort, '127.0.0.4');
    late.socket.write('GET /api/gateways HTTP/1.1\r\nHost: x\r\n\r\n');
    const a = parseAnswer(await late.closed);
    assert.deepEqual([a.status, a.body.ret], [503, 1205]);
    assert.match(a.body.errMsg, /most connections \(5\)/);
    const u = await upgrade(full.httpPort, {}, '127.0.0.4');
    assert.deepEqual([u.status, u.body.ret], [503, 1205]);

    for (const c of held) c.close();
    for (const s of sockets) s.socket.destroy();
    await waitUntil(() => full.caps.total === 0 && full.caps.refusing === 0, 'every slot released');
  });
});

describe('connection caps with TLS', () => {
  let srv: TestServer;
  let pem: DevCert;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'synchat-caps-tls-'));
    pem = await makeDevCert();
    writeFileSync(join(dir, 'cert.pem'), pem.cert);
    writeFileSync(join(dir, 'key.pem'), pem.key, { mode: 0o600 });
    srv = await startServer({ tlsCert: join(dir, 'cert.pem'), tlsKey: join(dir, 'key.pem'), maxConnsPerIp: 2, maxConns: 1000 });
  });
  after(async () => {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A TLS connection to `port` trusting the test certificate, collecting what it reads. */
  function tlsSocket(port: number): Promise<{ socket: TLSSocket; closed: Promise<Buffer> }> {
    return new Promise((resolve, reject) => {
      const socket = connectTls({ host: '127.0.0.1', port, ca: pem.cert }, () => resolve({ socket, closed }));
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      const closed = new Promise<Buffer>((r) => socket.once('close', () => r(Buffer.concat(chunks))));
      socket.once('error', reject);
    });
  }

  test('a socket counts from its accept, before its handshake; over the cap a TLS client still reads ERROR or 429', async () => {
    // Two silent sockets, one on each port, that never start a handshake: they hold this address's two slots.
    const silent = [srv.tcpPort, srv.httpPort].map((port) => rawSocket(port));
    await waitUntil(() => srv.caps.countOf('127.0.0.1') === 2, 'the silent sockets counted');

    const tcp = await tlsSocket(srv.tcpPort);
    const packets = new FrameDecoder(1 << 20).push(await tcp.closed).packets;
    assert.equal(packets[0]?.op, OP.ERROR);
    assert.equal((parseBody(packets[0]!.body) as { ret: number }).ret, 1205);

    const https = await tlsSocket(srv.httpPort);
    https.socket.write('GET /api/gateways HTTP/1.1\r\nHost: x\r\n\r\n');
    const a = parseAnswer((await https.closed).toString('latin1'));
    assert.deepEqual([a.status, a.body.ret], [429, 1205]);

    for (const s of silent) s.socket.destroy();
    await waitUntil(() => srv.caps.total === 0 && srv.caps.refusing === 0, 'every slot released');
    // Admitted now, and released again when the TLS connection closes.
    const ok = await tlsSocket(srv.httpPort);
    ok.socket.write('GET /api/gateways HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(parseAnswer((await ok.closed).toString('latin1')).status, 200);
    await waitUntil(() => srv.caps.total === 0, 'the TLS socket released its slot');
  });
});

describe('slow HTTP clients', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ httpHeadersTimeoutMs: 1000, httpRequestTimeoutMs: 2000 });
  });
  after(() => srv.stop());

  /**
   * Sends `head`, then `piece(i)` every 100 ms, 150 times (15 s if nobody stops it); resolves with what the
   * server answered once it closed, and how many pieces went out before.
   */
  async function trickle(head: string, piece: (i: number) => string): Promise<{ got: string; sent: number }> {
    const c = rawSocket(srv.httpPort);
    let sent = 0;
    c.socket.write(head);
    const sending = (async () => {
      for (; sent < 150 && !c.socket.destroyed; sent++) {
        c.socket.write(piece(sent));
        await sleep(100);
      }
    })();
    const got = await c.closed;
    await sending;
    return { got, sent };
  }

  test('a client trickling header lines is answered 408 and closed before it is done', async () => {
    const { got, sent } = await trickle('GET /api/gateways HTTP/1.1\r\nHost: x\r\n', (i) => `X-Slow-${i}: a\r\n`);
    assert.match(got, /^HTTP\/1\.1 408/);
    assert.ok(sent < 150, `closed only after all ${sent} lines`);
  });

  test('a client trickling its body is answered 408 and closed before it is done', async () => {
    const { got, sent } = await trickle('POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 150\r\n\r\n', () => ' ');
    assert.match(got, /^HTTP\/1\.1 408/);
    assert.ok(sent < 150, `closed only after all ${sent} bytes`);
  });

  test('a synccheck parked longer than the request timeout is answered, not cut: the timeouts cover receiving only', async () => {
    const dev = await userDevice(srv.url, 'slowpoll');
    const r = await api(srv.url, `/api/synccheck?syncKey=${dev.syncKey}&timeout=3000`, undefined, dev.sid);
    // Answered at its own timeout (selector 0: no news), 1 s after the request timeout had passed.
    assert.equal(r.status, 200);
    assert.deepEqual([r.body.ret, r.body.selector], [0, 0]);
  });

  test('a 2 MiB JSON body gets a readable 413 {ret:5}: from a raw client that sends it all, then reads', async () => {
    const body = Buffer.from(JSON.stringify({ username: 'x'.repeat(2 * 1024 * 1024) }));
    const c = rawSocket(srv.httpPort);
    c.socket.pause();
    c.socket.write(`POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
    // As a network delivers it: in pieces, while the server has long decided.
    for (let i = 0; i < body.length; i += 64 * 1024) {
      await new Promise<void>((resolve, reject) => c.socket.write(body.subarray(i, i + 64 * 1024), (e) => (e ? reject(e) : resolve())));
      await sleep(2);
    }
    c.socket.resume();
    await waitUntil(() => c.text().includes('}'), 'the answer arrived', 15_000);
    const a = parseAnswer(c.text());
    assert.equal(a.status, 413);
    assert.equal(a.body.ret, 5);
    assert.match(a.body.errMsg, /body exceeds 65536 bytes/);
    c.socket.destroy();

    const f = await fetch(srv.url + '/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    assert.equal(f.status, 413);
    assert.equal(((await f.json()) as { ret: number }).ret, 5);
  });
});

describe('/ws Origin check', () => {
  let srv: TestServer;
  let listed: TestServer;
  before(async () => {
    srv = await startServer();
    listed = await startServer({ allowedOrigins: 'https://chat.example.com, http://localhost:5173' });
  });
  after(async () => {
    await srv.stop();
    await listed.stop();
  });

  test('by default a browser page of this server may open /ws, another site may not (403 {ret:4}); no Origin may', async () => {
    const own = await upgrade(srv.httpPort, { origin: `http://127.0.0.1:${srv.httpPort}` });
    assert.equal(own.status, 101);
    own.ws!.terminate();
    for (const origin of ['http://evil.example', `http://127.0.0.1:${srv.httpPort + 1}`, 'null', `https://127.0.0.1.evil.example:${srv.httpPort}`]) {
      const r = await upgrade(srv.httpPort, { origin });
      assert.equal(r.status, 403, origin);
      assert.equal(r.body.ret, 4);
      assert.match(r.body.errMsg, /SYNCHAT_ALLOWED_ORIGINS/);
    }
    const tool = await upgrade(srv.httpPort);
    assert.equal(tool.status, 101);
    tool.ws!.terminate();
  });

  test('with SYNCHAT_ALLOWED_ORIGINS only the listed origins may', async () => {
    for (const origin of ['https://chat.example.com', 'http://localhost:5173', 'HTTPS://CHAT.EXAMPLE.COM']) {
      const r = await upgrade(listed.httpPort, { origin });
      assert.equal(r.status, 101, origin);
      r.ws!.terminate();
    }
    for (const origin of ['http://chat.example.com', `http://127.0.0.1:${listed.httpPort}`]) {
      assert.equal((await upgrade(listed.httpPort, { origin })).status, 403, origin);
    }
  });

  test('a bad SYNCHAT_ALLOWED_ORIGINS entry stops the start, naming the variable', () => {
    for (const bad of ['chat.example.com', 'https://chat.example.com/app', 'ftp://x', '*']) {
      assert.throws(() => loadConfig({ SYNCHAT_ALLOWED_ORIGINS: bad }), (e: Error) => e instanceof ConfigError && /SYNCHAT_ALLOWED_ORIGINS/.test(e.message), bad);
    }
    assert.throws(() => loadConfig({ SYNCHAT_HTTP_HEADERS_TIMEOUT_MS: '40000' }), /SYNCHAT_HTTP_HEADERS_TIMEOUT_MS must not exceed/);
  });
});

describe('browser headers', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ webRoot: new URL('../../web/dist', import.meta.url).pathname });
  });
  after(() => srv.stop());

  test('the web app gets a Content-Security-Policy; API and media answers nosniff and no-referrer', async () => {
    const page = await fetch(srv.url + '/');
    await page.arrayBuffer();
    const csp = page.headers.get('content-security-policy') ?? '';
    for (const d of ["script-src 'self'", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "connect-src 'self'", "img-src 'self' blob:", "media-src 'self' blob:"]) {
      assert.ok(csp.includes(d), `${d} in ${csp}`);
    }
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|upgrade-insecure-requests/);
    assert.equal(page.headers.get('x-frame-options'), 'DENY');
    assert.equal(page.headers.get('strict-transport-security'), null, 'no HSTS without TLS');

    const dev = await userDevice(srv.url, 'headers');
    const answers = [
      await api(srv.url, '/api/gateways'),
      await api(srv.url, '/api/login', {}),
      await api(srv.url, '/api/nowhere', {}),
      await api(srv.url, '/api/media/nosuchmedia', undefined, dev.sid, 'GET'),
    ];
    for (const a of answers) {
      assert.equal(a.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(a.headers.get('referrer-policy'), 'no-referrer');
    }
    assert.equal(answers[3]!.status, 404);
  });
});
