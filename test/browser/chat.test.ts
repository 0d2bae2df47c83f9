/**
 * The web client end to end in Chromium (issue 5): two people become contacts and chat, a second device of one
 * of them stays in step (messages, read state, recall), and a reload shows the history from the cache first.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { OP } from '../../src/protocol/index.ts';
import { acceptContact, login, messages, openApp, openChat, packetReader, register, requestContact, sendText, webSuite } from './harness.ts';

describe('web client: contacts, chat, devices', () => {
  const env = webSuite();

  test('two users become contacts and chat; a second device of the first sees the same and stays in step', async (t) => {
    const { browser, server } = env;
    if (!browser) return t.skip('no Chromium');
    const alice = await openApp(browser, server.url);
    const bob = await openApp(browser, server.url);
    await register(alice.page, 'alice', 'Alice Liddell');
    await register(bob.page, 'bob', 'Bob Builder');

    await requestContact(alice.page, 'bob', 'hi, it is Alice');
    // Bob sees the request live, with its note, and accepts it.
    await bob.page.getByTestId('tab-contacts').click();
    const req = bob.page.locator('[data-testid="contact-request"][data-from="alice"]');
    await req.getByText('hi, it is Alice').waitFor();
    await acceptContact(bob.page, 'alice');

    // Both now list the other as a conversation before any message.
    await alice.page.locator('[data-testid="conversation-item"][data-peer="bob"]').waitFor();
    await bob.page.locator('[data-testid="conversation-item"][data-peer="alice"]').waitFor();
    await assert.doesNotReject(alice.page.locator('[data-testid="conversation-item"][data-peer="bob"]').getByText('Bob Builder').waitFor());

    await openChat(alice.page, 'bob');
    await sendText(alice.page, 'Hello Bob 👋 see https://example.com/docs?x=1');
    const mine = messages(alice.page, 'Hello Bob');
    await mine.and(alice.page.locator('[data-status="sent"], [data-status="read"]')).waitFor();
    const link = mine.locator('a[href="https://example.com/docs?x=1"]');
    assert.equal(await link.getAttribute('rel'), 'noopener noreferrer nofollow');

    // Bob gets it without a reload, with an unread badge, then reads it: Alice sees "read".
    const bobItem = bob.page.locator('[data-testid="conversation-item"][data-peer="alice"]');
    await bobItem.getByTestId('unread-count').getByText('1').waitFor();
    assert.equal(await bob.page.title(), '(1) Synchat');
    await openChat(bob.page, 'alice');
    await messages(bob.page, 'Hello Bob').and(bob.page.locator('[data-from="alice"]')).waitFor();
    await mine.and(alice.page.locator('[data-status="read"]')).waitFor();
    await bobItem.getByTestId('unread-count').waitFor({ state: 'detached' });
    await bob.page.waitForFunction(() => document.title === 'Synchat');

    // HTML in a message is shown as text, never interpreted.
    await sendText(bob.page, '<img src=x onerror="window.__pwned=1"><b>bold?</b>');
    await messages(alice.page, '<b>bold?</b>').waitFor();
    assert.equal(await alice.page.evaluate(() => (window as any).__pwned), undefined);
    assert.equal(await alice.page.locator('[data-testid="message"] b').count(), 0);

    // Shift+Enter makes a new line; Enter sends.
    const input = alice.page.getByTestId('composer-input');
    await input.fill('line one');
    await input.press('Shift+Enter');
    await input.pressSequentially('line two');
    await input.press('Enter');
    await messages(bob.page, 'line one\nline two').waitFor();

    // A third context is Alice's second device: it downloads the history and stays in step.
    const alice2 = await openApp(browser, server.url);
    await login(alice2.page, 'alice');
    await openChat(alice2.page, 'bob');
    await messages(alice2.page, 'Hello Bob').waitFor();
    await messages(alice2.page, 'bold?').waitFor();
    await messages(alice2.page, 'Hello Bob').and(alice2.page.locator('[data-status="read"]')).waitFor();

    await sendText(alice2.page, 'from my second device');
    await messages(alice.page, 'from my second device').and(alice.page.locator('[data-from="alice"]')).waitFor();
    await messages(bob.page, 'from my second device').waitFor();

    // Recall from the first device: gone everywhere.
    const toRecall = messages(alice.page, 'from my second device');
    await toRecall.hover();
    await toRecall.getByTestId('message-recall').click();
    for (const page of [alice.page, alice2.page, bob.page]) {
      await page.locator('[data-testid="message"][data-recalled="true"]').first().waitFor();
      assert.equal(await messages(page, 'from my second device').count(), 0);
    }

    // The device list shows both of Alice's browsers; logging the second out from the first ends it there.
    await alice.page.getByRole('button', { name: 'Menu' }).click();
    await alice.page.getByRole('menuitem', { name: 'Devices' }).click();
    await alice.page.getByTestId('device').nth(1).waitFor();
    assert.equal(await alice.page.getByTestId('device').count(), 2);
    await alice.page.getByTestId('device-logout').click();
    await alice2.page.getByTestId('login-submit').waitFor();
    await alice2.page.getByText('logged out from another device').waitFor();

    await Promise.all([alice.context.close(), bob.context.close(), alice2.context.close()]);
  });

  test('a reload shows the chat from the cache before the network answers, then fetches only the delta', async (t) => {
    const { browser, server } = env;
    if (!browser) return t.skip('no Chromium');
    const carol = await openApp(browser, server.url);
    const dave = await openApp(browser, server.url);
    await register(carol.page, 'carol', 'Carol');
    await register(dave.page, 'dave', 'Dave');
    await requestContact(carol.page, 'dave');
    await acceptContact(dave.page, 'carol');
    await openChat(carol.page, 'dave');
    await openChat(dave.page, 'carol');
    for (let i = 1; i <= 3; i++) await sendText(carol.page, `cached message ${i}`);
    await messages(carol.page, 'cached message 3').and(carol.page.locator('[data-status="sent"], [data-status="read"]')).waitFor();
    await messages(dave.page, 'cached message 3').waitFor();

    // Hold every API call and the WebSocket: whatever shows now came from IndexedDB.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    // Every key the app presents after the reload: /api/sync and synccheck over HTTP, AUTH and SYNC on the WebSocket.
    const presented: { via: string; syncKey: number }[] = [];
    await carol.context.route('**/api/**', async (route) => {
      const url = new URL(route.request().url());
      if (url.pathname === '/api/sync') presented.push({ via: 'POST /api/sync', syncKey: route.request().postDataJSON().syncKey });
      if (url.pathname === '/api/synccheck') presented.push({ via: 'GET /api/synccheck', syncKey: Number(url.searchParams.get('syncKey')) });
      await held;
      await route.continue();
    });
    await carol.context.routeWebSocket(/\/ws$/, async (ws) => {
      await held;
      const server = ws.connectToServer();
      const up = packetReader();
      ws.onMessage((m) => {
        for (const p of up(m)) {
          if ((p.op === OP.AUTH || p.op === OP.SYNC) && p.body.syncKey !== undefined) presented.push({ via: p.op === OP.AUTH ? 'AUTH' : 'SYNC', syncKey: p.body.syncKey });
        }
        server.send(m);
      });
    });
    await carol.page.reload();
    await openChat(carol.page, 'dave');
    await messages(carol.page, 'cached message 1').waitFor();
    await messages(carol.page, 'cached message 3').waitFor();
    await carol.page.getByTestId('connection-banner').waitFor();

    // Dave writes meanwhile; once the network is back, Carol gets just that.
    await sendText(dave.page, 'news after the reload');
    release();
    await messages(carol.page, 'news after the reload').waitFor();
    await carol.page.getByTestId('connection-banner').waitFor({ state: 'detached' });
    assert.equal(await messages(carol.page, 'cached message 2').count(), 1, 'no message is shown twice');
    // Every sync after the reload started from the cached key, never from 0 (and news arrived, so it synced).
    assert.ok(presented.length > 0, 'the app presented its key after the reload');
    assert.deepEqual(presented.filter((p) => !(p.syncKey > 0)), [], `keys presented: ${JSON.stringify(presented)}`);
    await Promise.all([carol.context.close(), dave.context.close()]);
  });
});
