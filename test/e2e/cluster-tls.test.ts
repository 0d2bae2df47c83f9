// Native TLS in the several-process server (`npm start` with SYNCHAT_WORKERS): every gateway worker reads the
// certificate and serves HTTPS, WSS and TLS on the shared ports; and a server whose TLS files cannot be read
// stops at start with a message naming the variable.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { nodeConnectors, nodeFetch, nodeWebSocketConnector } from '../../src/sdk/node/index.ts';
import { writeDevCert } from '../../scripts/dev-cert.ts';
import { freePort, spawnServerProcess } from '../helpers/process.ts';
import { befriend, startClient, waitUntil, type TestClient } from '../sdk/helpers.ts';

test('gateway worker processes serve the long connection over TLS and WSS, and the API over HTTPS', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'synchat-cluster-tls-'));
  const { certFile, keyFile } = await writeDevCert(join(dataDir, 'tls'));
  const ca = readFileSync(certFile);
  const tcpPort = await freePort();
  const server = await spawnServerProcess({
    SYNCHAT_DATA_DIR: dataDir,
    SYNCHAT_WORKERS: '2',
    SYNCHAT_HTTP_PORT: String(await freePort()),
    SYNCHAT_TCP_PORT: String(tcpPort),
    SYNCHAT_TLS_CERT: certFile,
    SYNCHAT_TLS_KEY: keyFile,
  });
  const clients: TestClient[] = [];
  try {
    const fetchImpl = nodeFetch({ ca });
    const gateways = (await (await fetchImpl(`${server.url}/api/gateways`)).json()).gateways;
    assert.deepEqual(
      gateways.map((g: { url: string }) => g.url.split(':')[0]),
      ['tls', 'wss', 'https'],
    );
    const alice = await startClient('tcp', server.url, 'ctls_alice', 'a1', { fetch: fetchImpl, connectors: nodeConnectors({ ca }) });
    const bob = await startClient('ws', server.url, 'ctls_bob', 'b1', { fetch: fetchImpl, connectors: [nodeWebSocketConnector({ ca })] });
    clients.push(alice, bob);
    assert.equal(alice.client.connection.url, `tls://127.0.0.1:${tcpPort}`);
    await befriend(alice.client, bob.client);
    for (let i = 0; i < 5; i++) {
      await alice.client.sendText('ctls_bob', `m${i}`, `ctls-a-${i}`);
      await bob.client.sendText('ctls_alice', `r${i}`, `ctls-b-${i}`);
    }
    await waitUntil(() => alice.messages.length >= 10 && bob.messages.length >= 10, 'both devices have all 10 messages');
    assert.deepEqual(alice.ids(), bob.ids());
  } finally {
    for (const c of clients) await c.client.close();
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('a server whose TLS certificate cannot be read stops at start, naming the variable', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'synchat-tls-missing-'));
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server/main.ts'], {
      env: { ...process.env, SYNCHAT_DATA_DIR: dataDir, SYNCHAT_HTTP_PORT: '0', SYNCHAT_TCP_PORT: '0', SYNCHAT_WORKERS: '0', SYNCHAT_TLS_CERT: join(dataDir, 'nope.pem'), SYNCHAT_TLS_KEY: join(dataDir, 'nope-key.pem') },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 2);
    assert.match(stderr, /synchat: SYNCHAT_TLS_CERT: cannot read .*nope\.pem: ENOENT/);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
