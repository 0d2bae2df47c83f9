// Native TLS (SYNCHAT_TLS_CERT / SYNCHAT_TLS_KEY) against real listeners with a certificate made here by the same
// code as `npm run dev-cert`: HTTPS calls, the gateway directory, the long connection over TLS on the TCP port and
// over WSS through the SDK, the SDK's fallback tls → wss → HTTPS long-poll, and the settings' errors.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { SynchatClient, type Gateway } from '../../src/sdk/index.ts';
import { nodeConnectors, nodeFetch, nodeWebSocketConnector } from '../../src/sdk/node/index.ts';
import { ConfigError, loadConfig } from '../../src/server/config.ts';
import { makeDevCert, type DevCert } from '../../scripts/dev-cert.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { Proxy, befriend, startClient, waitUntil, type TestClient } from '../sdk/helpers.ts';

/** Writes a fresh dev certificate into `dir`; returns it with its file paths. */
async function certFiles(dir: string, name = 'tls'): Promise<DevCert & { certFile: string; keyFile: string; paths: { tlsCert: string; tlsKey: string } }> {
  const pem = await makeDevCert();
  const certFile = join(dir, `${name}-cert.pem`);
  const keyFile = join(dir, `${name}-key.pem`);
  writeFileSync(certFile, pem.cert);
  writeFileSync(keyFile, pem.key, { mode: 0o600 });
  return { ...pem, certFile, keyFile, paths: { tlsCert: certFile, tlsKey: keyFile } };
}

describe('native TLS', () => {
  let dir: string;
  let pem: Awaited<ReturnType<typeof certFiles>>;
  let srv: TestServer;
  let base: string;
  const clients: SynchatClient[] = [];
  const proxies: Proxy[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'synchat-tls-'));
    pem = await certFiles(dir);
    srv = await startServer({ tlsCert: pem.certFile, tlsKey: pem.keyFile });
    base = `https://127.0.0.1:${srv.httpPort}`;
  });
  after(async () => {
    for (const c of clients) await c.close();
    for (const p of proxies) await p.close();
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** SDK options that trust the test certificate on every transport. */
  function trusting(extra: Record<string, unknown> = {}) {
    return { fetch: nodeFetch({ ca: pem.cert }), connectors: nodeConnectors({ ca: pem.cert }), ...extra };
  }

  async function client(transport: 'tcp' | 'ws' | 'http', username: string, extra: Record<string, unknown> = {}): Promise<TestClient> {
    const c = await startClient(transport, base, username, 'dev1', trusting(extra));
    clients.push(c.client);
    return c;
  }

  it('serves the API over HTTPS and lists https, wss and tls gateways under the usual transport names', async () => {
    const res = await nodeFetch({ ca: pem.cert })(`${base}/api/gateways`);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.deepEqual(body.gateways, [
      { transport: 'tcp', url: `tls://127.0.0.1:${srv.tcpPort}` },
      { transport: 'ws', url: `wss://127.0.0.1:${srv.httpPort}/ws` },
      { transport: 'http', url: `https://127.0.0.1:${srv.httpPort}` },
    ]);
    const reg = await nodeFetch({ ca: pem.cert })(`${base}/api/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'tls_reg', password: 'password-tls_reg', displayName: 'T' }),
    });
    assert.equal((await reg.json()).ret, 0);
  });

  it('refuses a client that does not trust the certificate, and plain HTTP on the TLS port', async () => {
    await assert.rejects(nodeFetch()(`${base}/api/gateways`), (err: Error) => /self.signed|certificate/i.test(String((err.cause as Error)?.message)));
    await assert.rejects(fetch(`http://127.0.0.1:${srv.httpPort}/api/gateways`));
  });

  it('speaks TLS 1.2 and 1.3 on the TCP port and refuses TLS 1.1', async () => {
    const handshake = (opts: { minVersion?: 'TLSv1' | 'TLSv1.2'; maxVersion: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3' }) =>
      new Promise<string>((resolve, reject) => {
        const s = connectTls({ host: '127.0.0.1', port: srv.tcpPort, ca: pem.cert, ...opts }, () => {
          resolve(s.getProtocol() ?? '');
          s.destroy();
        });
        s.on('error', reject);
      });
    assert.equal(await handshake({ maxVersion: 'TLSv1.3' }), 'TLSv1.3');
    assert.equal(await handshake({ maxVersion: 'TLSv1.2' }), 'TLSv1.2');
    await assert.rejects(handshake({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1' }));
  });

  it('holds the binary long connection inside TLS on the TCP port (AUTH, then PUSH), found through the directory', async () => {
    const alice = await client('tcp', 'tls_alice');
    assert.equal(alice.client.connection.url, `tls://127.0.0.1:${srv.tcpPort}`);
    const bob = await client('http', 'tls_bob', { connectors: [] });
    await befriend(bob.client, alice.client);
    await bob.client.sendText('tls_alice', 'over TLS', 'tls-1');
    await waitUntil(() => alice.ids().includes('tls-1'), 'alice got the message over the TLS long connection');
    assert.equal(alice.client.connection.transport, 'tcp');
    assert.ok(srv.connections.list().some((c) => c.transport === 'tcp' && c.isOpen), 'the server holds an authenticated tcp (TLS) connection');
  });

  it('holds the long connection over WSS', async () => {
    const carol = await client('ws', 'tls_carol', { connectors: [nodeWebSocketConnector({ ca: pem.cert })] });
    assert.equal(carol.client.connection.url, `wss://127.0.0.1:${srv.httpPort}/ws`);
    const dave = await client('http', 'tls_dave', { connectors: [] });
    await befriend(dave.client, carol.client);
    await dave.client.sendText('tls_carol', 'over WSS', 'wss-1');
    await waitUntil(() => carol.ids().includes('wss-1'), 'carol got the message over WSS');
  });

  /** A listener that closes every connection at once: a port the network blocks. */
  async function refusing(): Promise<Proxy> {
    const p = await new Proxy(srv.tcpPort).listen();
    p.refuse(true);
    proxies.push(p);
    return p;
  }

  it('falls back to wss when the tls gateway refuses', async () => {
    const blocked = await refusing();
    const gateways: Gateway[] = [
      { transport: 'tcp', url: `tls://127.0.0.1:${blocked.port}` },
      { transport: 'ws', url: `wss://127.0.0.1:${srv.httpPort}/ws` },
      { transport: 'http', url: base },
    ];
    const erin = await client('ws', 'tls_erin', { gateways });
    assert.equal(erin.client.connection.url, `wss://127.0.0.1:${srv.httpPort}/ws`);
  });

  it('falls back to HTTPS long-poll when neither tls nor wss can connect, and still gets news', async () => {
    const blocked = await refusing();
    const gateways: Gateway[] = [
      { transport: 'tcp', url: `tls://127.0.0.1:${blocked.port}` },
      { transport: 'ws', url: `wss://127.0.0.1:${blocked.port}/ws` },
      { transport: 'http', url: base },
    ];
    const frank = await client('http', 'tls_frank', { gateways });
    assert.equal(frank.client.connection.url, base);
    const gina = await client('tcp', 'tls_gina');
    await befriend(gina.client, frank.client);
    await gina.client.sendText('tls_frank', 'over HTTPS long-poll', 'poll-1');
    await waitUntil(() => frank.ids().includes('poll-1'), 'frank got the message over HTTPS long-poll');
  });
});

describe('TLS handshakes', () => {
  it('drops a peer that opens a socket and never finishes its handshake, on the HTTPS and the TCP port', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'synchat-tls-slow-'));
    // The handshake is bounded by the auth timeout (Node's own default: 120 s, past the wait's hang guard).
    const srv = await startServer({ ...(await certFiles(dir)).paths, authTimeoutMs: 300 });
    const sockets: Socket[] = [];
    try {
      for (const port of [srv.httpPort, srv.tcpPort]) {
        const socket = connectTcp({ host: '127.0.0.1', port });
        sockets.push(socket);
        socket.on('error', () => {});
        let isClosed = false;
        socket.on('close', () => (isClosed = true));
        await waitUntil(() => isClosed, `the server closed the silent socket on port ${port}`, 15_000);
      }
    } finally {
      for (const s of sockets) s.destroy(); // a socket left open would hold the server's close
      await srv.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('TLS settings', () => {
  it('wants SYNCHAT_TLS_CERT and SYNCHAT_TLS_KEY together, naming the missing one', () => {
    assert.throws(() => loadConfig({ SYNCHAT_TLS_CERT: '/x/cert.pem' }), (e: Error) => e instanceof ConfigError && /SYNCHAT_TLS_KEY is missing/.test(e.message));
    assert.throws(() => loadConfig({ SYNCHAT_TLS_KEY: '/x/key.pem' }), (e: Error) => e instanceof ConfigError && /SYNCHAT_TLS_CERT is missing/.test(e.message));
    assert.equal(loadConfig({ SYNCHAT_TLS_CERT: '/x/c', SYNCHAT_TLS_KEY: '/x/k' }).tlsKey, '/x/k');
  });

  it('fails at start on an unreadable file or a key that is not the certificate’s, naming the variables', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'synchat-tls-bad-'));
    try {
      const a = await certFiles(dir, 'a');
      const b = await certFiles(dir, 'b');
      await assert.rejects(startServer({ dataDir: dir, tlsCert: join(dir, 'missing.pem'), tlsKey: a.keyFile }), (e: Error) => e instanceof ConfigError && /SYNCHAT_TLS_CERT: cannot read .*missing\.pem: ENOENT/.test(e.message));
      await assert.rejects(startServer({ dataDir: dir, tlsCert: a.certFile, tlsKey: join(dir, 'nokey.pem') }), (e: Error) => e instanceof ConfigError && /SYNCHAT_TLS_KEY: cannot read/.test(e.message));
      await assert.rejects(startServer({ dataDir: dir, tlsCert: a.certFile, tlsKey: b.keyFile }), (e: Error) => e instanceof ConfigError && /SYNCHAT_TLS_CERT \/ SYNCHAT_TLS_KEY: not a usable/.test(e.message));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
