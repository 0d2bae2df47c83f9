// The addresses a node advertises in `/api/gateways` (docs/deploy.md "Public addresses"): the public URLs when set,
// the listen address otherwise, and on a wildcard listen address the Host the caller reached, never `0.0.0.0`.
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { test } from 'node:test';
import { gatewayDirectory } from '../../src/server/advertised.ts';
import { ConfigError, loadConfig } from '../../src/server/config.ts';
import { api, startServer } from '../helpers/server.ts';

const ports = () => ({ httpPort: 8080, tcpPort: 8081 });
const urls = (list: { transport: string; url: string }[]) => Object.fromEntries(list.map((g) => [g.transport, g.url]));

test('SYNCHAT_PUBLIC_URL sets the http and ws URLs (a path kept, the scheme deciding ws or wss and tcp or tls); SYNCHAT_PUBLIC_TCP_URL the tcp one', () => {
  assert.deepEqual(urls(gatewayDirectory({ host: '0.0.0.0', tlsCert: '', publicUrl: 'https://chat.example.com/' }, ports)('evil.example')), {
    tcp: 'tls://chat.example.com:8081',
    ws: 'wss://chat.example.com/ws',
    http: 'https://chat.example.com',
  });
  assert.deepEqual(urls(gatewayDirectory({ host: '10.0.0.5', tlsCert: '', publicUrl: 'http://lb.internal:9000/chat', publicTcpUrl: 'tcp://lb.internal:7000' }, ports)()), {
    tcp: 'tcp://lb.internal:7000',
    ws: 'ws://lb.internal:9000/chat/ws',
    http: 'http://lb.internal:9000/chat',
  });
});

test('a wildcard listen address advertises the Host the caller reached (or the machine name), never 0.0.0.0; a fixed one advertises itself', () => {
  const wild = gatewayDirectory({ host: '0.0.0.0', tlsCert: '' }, ports);
  assert.deepEqual(urls(wild('chat.example.com:8080')), { tcp: 'tcp://chat.example.com:8081', ws: 'ws://chat.example.com:8080/ws', http: 'http://chat.example.com:8080' });
  assert.deepEqual(urls(wild('[2001:db8::1]:8080')), { tcp: 'tcp://[2001:db8::1]:8081', ws: 'ws://[2001:db8::1]:8080/ws', http: 'http://[2001:db8::1]:8080' });
  for (const bad of [undefined, 'a b', 'x/y', 'x@y:1']) {
    assert.deepEqual(urls(wild(bad)).http, `http://${hostname()}:8080`, String(bad));
  }
  assert.equal(urls(gatewayDirectory({ host: '::', tlsCert: 'c.pem' }, ports)('h:8080')).tcp, 'tls://h:8081');
  assert.equal(urls(gatewayDirectory({ host: '10.0.0.5', tlsCert: '' }, ports)('other:1')).http, 'http://10.0.0.5:8080');
});

test('SYNCHAT_PUBLIC_URL and SYNCHAT_PUBLIC_TCP_URL are checked at start, naming the variable', () => {
  assert.throws(() => loadConfig({ SYNCHAT_PUBLIC_URL: 'chat.example.com' }), (e: Error) => e instanceof ConfigError && /SYNCHAT_PUBLIC_URL/.test(e.message));
  assert.throws(() => loadConfig({ SYNCHAT_PUBLIC_TCP_URL: 'https://x:1' }), /SYNCHAT_PUBLIC_TCP_URL/);
  assert.throws(() => loadConfig({ SYNCHAT_DRAIN_MS: '-1' }), /SYNCHAT_DRAIN_MS/);
  assert.equal(loadConfig({ SYNCHAT_PUBLIC_URL: 'https://chat.example.com' }).publicUrl, 'https://chat.example.com');
});

test('/api/gateways of a server listening on 0.0.0.0 lists the Host the request reached', async (t) => {
  const srv = await startServer({ host: '0.0.0.0' });
  t.after(() => srv.stop());
  const r = await api(`http://localhost:${srv.httpPort}`, '/api/gateways');
  assert.deepEqual(urls(r.body.gateways), {
    tcp: `tcp://localhost:${srv.tcpPort}`,
    ws: `ws://localhost:${srv.httpPort}/ws`,
    http: `http://localhost:${srv.httpPort}`,
  });
});
