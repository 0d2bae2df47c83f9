/**
 * Blocking in the web client, in Chromium (issue 11): a contact blocked from the chat header is shown as blocked
 * on both of the blocker's browsers, their messages stop arriving, and unblocking from the contacts view restores
 * them.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { login, messages, openApp, openChat, sendText, twoContacts, webSuite } from './harness.ts';

describe('web client: blocking', () => {
  const env = webSuite();

  test('block from the chat, shown as blocked on every device, nothing arrives; unblock from the contacts view', async (t) => {
    const { browser, server } = env;
    if (!browser) return t.skip('no Chromium');
    const { a: alice, b: bob } = await twoContacts(browser, server.url, ['blk_alice', 'Alice'], ['blk_bob', 'Bob']);
    await openChat(bob.page, 'blk_alice');
    await sendText(bob.page, 'before the block');
    await openChat(alice.page, 'blk_bob');
    await messages(alice.page, 'before the block').waitFor();
    const alice2 = await openApp(browser, server.url);
    await login(alice2.page, 'blk_alice');

    // Block from the chat header (after a confirmation): the composer gives way to a notice with Unblock.
    alice.page.once('dialog', (d) => void d.accept());
    await alice.page.locator('.chat-header [data-testid="block-toggle"]').click();
    await alice.page.getByTestId('blocked-notice').waitFor();
    assert.equal(await alice.page.getByTestId('composer-input').count(), 0);

    // The other browser of Alice learns it from the log.
    await alice2.page.getByTestId('tab-contacts').click();
    await alice2.page.locator('[data-testid="contact-item"][data-username="blk_bob"] [data-testid="blocked-tag"]').waitFor();
    await alice2.page.locator('[data-testid="blocked-item"][data-username="blk_bob"]').waitFor();

    // Bob is not told: his message goes out as sent, and reaches no browser of Alice.
    await sendText(bob.page, 'while blocked');
    await messages(bob.page, 'while blocked').and(bob.page.locator('[data-status="sent"]')).waitFor();
    await sendText(bob.page, 'marker');
    await messages(bob.page, 'marker').and(bob.page.locator('[data-status="sent"]')).waitFor();

    // Unblock from Alice's second browser, in the contacts view; Bob's next message arrives everywhere.
    await alice2.page.locator('[data-testid="blocked-item"][data-username="blk_bob"] [data-testid="block-toggle"]').click();
    await alice2.page.locator('[data-testid="blocked-item"]').waitFor({ state: 'detached' });
    await alice.page.getByTestId('composer-input').waitFor();
    await sendText(bob.page, 'after the unblock');
    await messages(alice.page, 'after the unblock').waitFor();
    await alice2.page.getByTestId('tab-chats').click();
    await openChat(alice2.page, 'blk_bob');
    await messages(alice2.page, 'after the unblock').waitFor();
    for (const page of [alice.page, alice2.page]) {
      assert.equal(await messages(page, 'while blocked').count(), 0);
      assert.equal(await messages(page, 'marker').count(), 0);
    }
  });
});
