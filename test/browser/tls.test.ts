/**
 * The web client served over HTTPS (native TLS, a certificate made here like `npm run dev-cert`) in Chromium: the
 * page's scheme carries to its long connection (`wss://…/ws`, not `ws://`, which an HTTPS page may not open), and
 * two people chat over it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { writeDevCert } from '../../scripts/dev-cert.ts';
import type { TestServer } from '../helpers/server.ts';
import { acceptContact, launch, messages, openChat, register, requestContact, sendText, startWebServer } from './harness.ts';

describe('web client over HTTPS', () => {
  let browser: Browser | undefined;
  let server: TestServer;
  let dir: string;
  let origin: string;

  before(async (t) => {
    browser = await launch(t as never);
    if (!browser) return;
    dir = mkdtempSync(join(tmpdir(), 'synchat-web-tls-'));
    const { certFile, keyFile } = await writeDevCert(dir);
    server = await startWebServer({ tlsCert: certFile, tlsKey: keyFile });
    origin = `https://127.0.0.1:${server.httpPort}`;
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A browser context that accepts the self-signed certificate (as a user who trusted it would), at the app. */
  async function open(sockets: string[]): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser!.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 }, locale: 'en-GB', timezoneId: 'UTC' });
    const page = await context.newPage();
    page.on('pageerror', (err) => console.error(`[page error] ${err.message}`));
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await page.goto(origin);
    return { context, page };
  }

  test('opens its long connection over wss:// on the page’s origin and chats over it', async (t) => {
    if (!browser) return t.skip('no Chromium');
    const sockets: string[] = [];
    const alice = await open(sockets);
    const bob = await open(sockets);
    await register(alice.page, 'tls_web_a', 'Alice');
    await register(bob.page, 'tls_web_b', 'Bob');
    await requestContact(alice.page, 'tls_web_b');
    await acceptContact(bob.page, 'tls_web_a');
    await openChat(alice.page, 'tls_web_b');
    await sendText(alice.page, 'hello over TLS');
    await openChat(bob.page, 'tls_web_a');
    await messages(bob.page, 'hello over TLS').waitFor();
    assert.ok(sockets.length >= 2, `both pages opened a WebSocket (${sockets.join(', ')})`);
    for (const url of sockets) assert.equal(url, `wss://127.0.0.1:${server.httpPort}/ws`);
    assert.ok(server.connections.list().some((c) => c.transport === 'ws' && c.isOpen), 'the server holds an authenticated WSS connection');
  });
});
