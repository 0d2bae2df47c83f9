/**
 * More of the web client in Chromium (issue 5): groups (create, add, remove, leave), infinite scroll back through
 * a long history, a refused send shown with a red "!" that resends the same message, and a recorded voice note.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { api } from '../helpers/server.ts';
import { acceptContact, messages, openApp, openChat, recordVoice, register, requestContact, sendText, webSuite } from './harness.ts';

describe('web client: groups, history, resend, voice', () => {
  const env = webSuite();

  test('a group is created, grows, loses a member and is left, live in every member browser', async (t) => {
    const { browser, server } = env;
    if (!browser) return t.skip('no Chromium');
    const ivy = await openApp(browser, server.url);
    const jack = await openApp(browser, server.url);
    const kim = await openApp(browser, server.url);
    await register(ivy.page, 'ivy', 'Ivy');
    await register(jack.page, 'jack', 'Jack');
    await register(kim.page, 'kim', 'Kim');
    await requestContact(ivy.page, 'jack');
    await acceptContact(jack.page, 'ivy');
    await requestContact(ivy.page, 'kim');
    await acceptContact(kim.page, 'ivy');

    await ivy.page.getByRole('button', { name: 'New group' }).click();
    await ivy.page.getByTestId('group-name').fill('Book club');
    await ivy.page.locator('[data-testid="pick-member"][value="jack"]').check();
    await ivy.page.getByTestId('group-create').click();
    await ivy.page.getByTestId('chat-title').getByText('Book club').waitFor();
    const item = jack.page.locator('[data-testid="conversation-item"]').filter({ hasText: 'Book club' });
    await item.waitFor();
    const groupId = (await item.getAttribute('data-peer'))!;
    assert.match(groupId, /^@@\d+$/);

    await sendText(ivy.page, 'first chapter tonight?');
    await openChat(jack.page, groupId);
    await messages(jack.page, 'first chapter tonight?').waitFor();

    // Add Kim: the group appears in her list without a reload.
    await ivy.page.getByTestId('group-info').click();
    await ivy.page.locator('[data-testid="pick-member"][value="kim"]').check();
    await ivy.page.getByRole('button', { name: 'Add 1' }).click();
    await ivy.page.locator('[data-testid="group-member"][data-username="kim"]').waitFor();
    await kim.page.locator(`[data-testid="conversation-item"][data-peer="${groupId}"]`).waitFor();

    // Remove Jack: it disappears from his list.
    await ivy.page.getByRole('button', { name: 'Remove jack' }).click();
    await ivy.page.locator('[data-testid="group-member"][data-username="jack"]').waitFor({ state: 'detached' });
    await jack.page.locator(`[data-testid="conversation-item"][data-peer="${groupId}"]`).waitFor({ state: 'detached' });

    // Kim leaves.
    await openChat(kim.page, groupId);
    await kim.page.getByTestId('group-info').click();
    await kim.page.getByTestId('group-leave').click();
    await kim.page.locator(`[data-testid="conversation-item"][data-peer="${groupId}"]`).waitFor({ state: 'detached' });
    await ivy.page.locator('[data-testid="group-member"][data-username="kim"]').waitFor({ state: 'detached' });
    await Promise.all([ivy.context.close(), jack.context.close(), kim.context.close()]);
  });

  test('scrolling up loads older messages page by page until the first one', async (t) => {
    const { browser, server } = env;
    if (!browser) return t.skip('no Chromium');
    const leo = await openApp(browser, server.url);
    await register(leo.page, 'leo', 'Leo');
    // Mia and 130 messages, made over the API.
    await api(server.url, '/api/register', { username: 'mia', password: 'pw-mia-123', displayName: 'Mia' });
    const mia = (await api(server.url, '/api/login', { username: 'mia', password: 'pw-mia-123', deviceId: 'api' })).body;
    await requestContact(leo.page, 'mia');
    assert.equal((await api(server.url, '/api/contacts/accept', { username: 'leo' }, mia.sid)).body.ret, 0);
    for (let i = 1; i <= 130; i++) {
      const r = await api(server.url, '/api/sendmsg', { clientMsgId: `h${i}`, to: 'leo', type: 1, content: `history #${i}` }, mia.sid);
      assert.equal(r.body.ret, 0);
    }
    await leo.page.locator('[data-testid="conversation-item"][data-peer="mia"]').getByText('history #130').waitFor();
    await openChat(leo.page, 'mia');
    await messages(leo.page, 'history #130').waitFor();
    assert.ok((await messages(leo.page).count()) < 130, 'the first page is not the whole history');
    const list = leo.page.getByTestId('message-list');
    const first = leo.page.locator('[data-testid="message"] .text').getByText('history #1', { exact: true });
    // Scroll to the top until the first message shows: each scroll loads one older page (however slow the machine).
    for (const deadline = Date.now() + 30_000; (await first.count()) === 0 && Date.now() < deadline; ) {
      await list.evaluate((el) => (el.scrollTop = 0));
      await leo.page.waitForTimeout(150);
    }
    await first.waitFor();
    assert.equal(await messages(leo.page).count(), 130);
    await leo.context.close();
  });

  test('a refused send shows a red "!" and a click sends the same message again, delivered once', async (t) => {
    const { browser, server } = env;
    if (!browser) return t.skip('no Chromium');
    const nina = await openApp(browser, 'about:blank');
    // Long-poll only, so sends go over HTTP where the test can refuse one.
    await nina.context.routeWebSocket(/\/ws$/, (ws) => ws.close());
    await nina.page.goto(server.url);
    const otto = await openApp(browser, server.url);
    await register(nina.page, 'nina', 'Nina');
    await register(otto.page, 'otto', 'Otto');
    await requestContact(nina.page, 'otto');
    await acceptContact(otto.page, 'nina');
    await openChat(nina.page, 'otto');
    await openChat(otto.page, 'nina');

    const bodies: any[] = [];
    let isRefusing = true;
    await nina.context.route('**/api/sendmsg', async (route) => {
      bodies.push(route.request().postDataJSON());
      if (isRefusing) return route.fulfill({ status: 403, contentType: 'application/json', body: JSON.stringify({ ret: 4, errMsg: 'refused by the test' }) });
      return route.continue();
    });
    await sendText(nina.page, 'try me again');
    const m = messages(nina.page, 'try me again');
    await m.and(nina.page.locator('[data-status="failed"]')).waitFor();
    isRefusing = false;
    await m.getByTestId('message-resend').click();
    await m.and(nina.page.locator('[data-status="sent"], [data-status="read"]')).waitFor();
    await messages(otto.page, 'try me again').waitFor();
    assert.equal(bodies.length, 2);
    assert.equal(bodies[0].clientMsgId, bodies[1].clientMsgId, 'the resend carries the same clientMsgId');
    await sendText(otto.page, 'received');
    await messages(nina.page, 'received').waitFor();
    assert.equal(await messages(otto.page, 'try me again').count(), 1);
    assert.equal(await messages(nina.page, 'try me again').count(), 1);
    await Promise.all([nina.context.close(), otto.context.close()]);
  });

  test('holding the mic records a voice note that the other side can play', async (t) => {
    const { browser, server } = env;
    if (!browser) return t.skip('no Chromium');
    const pia = await openApp(browser, server.url);
    await pia.context.grantPermissions(['microphone']);
    const quin = await openApp(browser, server.url);
    await register(pia.page, 'pia', 'Pia');
    await register(quin.page, 'quin', 'Quin');
    await requestContact(pia.page, 'quin');
    await acceptContact(quin.page, 'pia');
    await openChat(pia.page, 'quin');
    await openChat(quin.page, 'pia');
    await recordVoice(pia.page, 1200);
    const sent = pia.page.locator('[data-testid="message"][data-from="pia"]').filter({ has: pia.page.getByTestId('message-voice') });
    await sent.and(pia.page.locator('[data-status="sent"], [data-status="read"]')).waitFor({ timeout: 20_000 });
    const got = quin.page.locator('[data-testid="message"][data-from="pia"]').getByTestId('message-voice');
    await got.waitFor();
    assert.match((await got.textContent()) ?? '', /0:0[1-2]/);
    await got.getByRole('button', { name: 'Play voice message' }).click();
    await got.getByRole('button', { name: 'Pause voice message' }).waitFor();
    await Promise.all([pia.context.close(), quin.context.close()]);
  });
});
