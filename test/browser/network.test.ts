/**
 * The web client when the network misbehaves (issue 5): a link that dies silently while a message is on the wire
 * (the app must notice by its heartbeat), messages written offline, and a browser that cannot use WebSockets at
 * all (long-poll); plus an image message end to end.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import type { BrowserContext } from 'playwright-core';
import { OP } from '../../src/protocol/index.ts';
import { waitUntil } from '../helpers/wait.ts';
import { acceptContact, messages, openApp, openChat, packetReader, register, requestContact, sendText, webSuite } from './harness.ts';

/**
 * Routes the context's WebSockets through Playwright so a test can make them go silent: `down` drops what the
 * server sends (a SEND reaches the server, its SEND_ACK is lost), `both` drops everything, and new sockets are
 * refused while cut — as a dead network does, without the browser noticing anything. Every answer the server gave
 * to a send (SEND_ACK, or `/api/sendmsg` over HTTP) is kept by the message's content in `answers`, delivered or
 * not. While `isLogHeld`, the log's entries (PUSH and SYNC_RESP, and `/api/sync` over HTTP) are held back until
 * `releaseLog()`: the app can then learn that a send went through only from the send's own answer.
 */
async function cuttableWebSockets(context: BrowserContext) {
  const held: (() => void)[] = [];
  const link = {
    cut: 'none' as 'none' | 'down' | 'both',
    answers: new Map<string, any[]>(),
    isLogHeld: false,
    releaseLog() {
      link.isLogHeld = false;
      for (const release of held.splice(0)) release();
    },
  };
  const answered = (content: string, answer: unknown) => link.answers.set(content, [...(link.answers.get(content) ?? []), answer]);
  await context.routeWebSocket(/\/ws$/, (ws) => {
    if (link.cut !== 'none') return void ws.close();
    const server = ws.connectToServer();
    const [up, down] = [packetReader(), packetReader()];
    const sent = new Map<number, string>(); // SEND seq → content
    ws.onMessage((m) => {
      if (link.cut === 'both') return;
      for (const p of up(m)) if (p.op === OP.SEND) sent.set(p.seq, p.body.content);
      server.send(m);
    });
    server.onMessage((m) => {
      const packets = down(m);
      for (const p of packets) if (p.op === OP.SEND_ACK && sent.has(p.seq)) answered(sent.get(p.seq)!, p.body);
      if (link.cut !== 'none') return;
      if (link.isLogHeld && packets.some((p) => p.op === OP.PUSH || p.op === OP.SYNC_RESP)) held.push(() => ws.send(m));
      else ws.send(m);
    });
  });
  await context.route('**/api/sendmsg', async (route) => {
    const response = await route.fetch();
    answered(route.request().postDataJSON().content, await response.json());
    await route.fulfill({ response });
  });
  await context.route('**/api/sync', async (route) => {
    if (link.isLogHeld) held.push(() => void route.continue());
    else await route.continue();
  });
  return link;
}

describe('web client: network', () => {
  const env = webSuite();

  test('a message sent while the link dies silently, and one written offline, are each delivered exactly once after reconnecting', async (t) => {
    const { browser, server } = env;
    if (!browser) return t.skip('no Chromium');
    const erin = await openApp(browser, 'about:blank');
    const link = await cuttableWebSockets(erin.context);
    await erin.page.goto(server.url);
    const fred = await openApp(browser, server.url);
    await register(erin.page, 'erin', 'Erin');
    await register(fred.page, 'fred', 'Fred');
    await requestContact(erin.page, 'fred');
    await acceptContact(fred.page, 'erin');
    await openChat(erin.page, 'fred');
    await openChat(fred.page, 'erin');
    await sendText(erin.page, 'before the cut');
    await messages(fred.page, 'before the cut').waitFor();
    await erin.page.getByTestId('connection-banner').waitFor({ state: 'detached' });

    // The SEND reaches the server but its answer never comes back; HTTP is down too.
    link.cut = 'down';
    await sendText(erin.page, 'sent as the link died');
    await messages(fred.page, 'sent as the link died').waitFor();
    await erin.context.setOffline(true);
    // Erin's app notices the dead link by itself (heartbeat), shows the banner, and keeps the message pending.
    await erin.page.getByTestId('connection-banner').waitFor();
    link.cut = 'both';
    await sendText(erin.page, 'written offline');
    const offline = messages(erin.page, 'written offline');
    await offline.waitFor();
    assert.equal(await offline.getAttribute('data-status'), 'sending');
    assert.equal(await messages(erin.page, 'sent as the link died').getAttribute('data-status'), 'sending');

    // Back online: both go out under their clientMsgIds; the server recognises the first as a repeat. The log is
    // held back until it has answered, so the app resends rather than finding its message in the log first.
    link.isLogHeld = true;
    link.cut = 'none';
    await erin.context.setOffline(false);
    await waitUntil(() => (link.answers.get('sent as the link died')?.length ?? 0) >= 2, 'the message cut off is sent again');
    const [first, again] = link.answers.get('sent as the link died')!;
    assert.equal(first.duplicate, false);
    assert.deepEqual([again.ret, again.duplicate, again.msgId, again.seq], [0, true, first.msgId, first.seq], 'the resend is answered as a repeat');
    link.releaseLog();
    await erin.page.getByTestId('connection-banner').waitFor({ state: 'detached', timeout: 30_000 });
    await offline.and(erin.page.locator('[data-status="sent"], [data-status="read"]')).waitFor();
    await messages(fred.page, 'written offline').waitFor();
    await sendText(fred.page, 'got them');
    await messages(erin.page, 'got them').waitFor();
    for (const page of [erin.page, fred.page]) {
      assert.equal(await messages(page, 'sent as the link died').count(), 1);
      assert.equal(await messages(page, 'written offline').count(), 1);
      assert.equal(await messages(page, 'before the cut').count(), 1);
    }
    assert.notEqual(await messages(erin.page, 'sent as the link died').getAttribute('data-status'), 'failed');
    await Promise.all([erin.context.close(), fred.context.close()]);
  });

  test('an image goes from one browser to another (the receiver on long-poll, without WebSockets) and opens full size', async (t) => {
    const { browser, server } = env;
    if (!browser) return t.skip('no Chromium');
    const gina = await openApp(browser, server.url);
    const hank = await openApp(browser, 'about:blank');
    // No WebSocket for Hank: the app falls back to HTTP long-poll.
    await hank.context.routeWebSocket(/\/ws$/, (ws) => ws.close());
    await hank.page.goto(server.url);
    await register(gina.page, 'gina', 'Gina');
    await register(hank.page, 'hank', 'Hank');
    await requestContact(gina.page, 'hank', 'photos!');
    await acceptContact(hank.page, 'gina');
    await openChat(gina.page, 'hank');
    await openChat(hank.page, 'gina');
    assert.equal(await hank.page.evaluate(() => (window as any).synchat.client.transport), 'http');

    const png = await sharp({ create: { width: 640, height: 400, channels: 3, background: { r: 15, g: 118, b: 110 } } }).png().toBuffer();
    await gina.page.getByTestId('image-input').setInputFiles({ name: 'teal.png', mimeType: 'image/png', buffer: png });
    const sent = gina.page.locator('[data-testid="message"][data-from="gina"]').filter({ has: gina.page.getByTestId('message-image') });
    await sent.and(gina.page.locator('[data-status="sent"], [data-status="read"]')).waitFor({ timeout: 30_000 });
    assert.ok(await sent.getAttribute('data-msgid'));

    const got = hank.page.locator('[data-testid="message"][data-from="gina"]').getByTestId('message-image');
    await got.waitFor();
    await hank.page.waitForFunction(() => {
      const img = document.querySelector<HTMLImageElement>('[data-testid="message-image"]');
      return !!img && img.complete && img.naturalWidth > 0;
    });
    await got.click();
    const full = hank.page.getByTestId('image-viewer');
    await full.waitFor();
    await hank.page.waitForFunction(() => (document.querySelector<HTMLImageElement>('[data-testid="image-viewer"]')?.naturalWidth ?? 0) === 640);

    // Hank answers over long-poll too.
    await hank.page.keyboard.press('Escape');
    await sendText(hank.page, 'nice colour');
    await messages(gina.page, 'nice colour').waitFor();
    await Promise.all([gina.context.close(), hank.context.close()]);
  });
});
