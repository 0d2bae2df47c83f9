/**
 * The account settings of the web client in Chromium (issue 11): the devices dialog shows each device's last
 * activity, changing the password there logs the other browser out (and only the new password signs in), and
 * "log out everywhere" ends this browser and the others.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { login, openApp, register, webSuite } from './harness.ts';

describe('web client: password and devices', () => {
  const env = webSuite();

  test('changing the password logs the other browser out; the new password signs in; log out everywhere ends both', async (t) => {
    const { browser, server } = env;
    if (!browser) return t.skip('no Chromium');
    const first = await openApp(browser, server.url);
    const second = await openApp(browser, server.url);
    await register(first.page, 'pia', 'Pia');
    await login(second.page, 'pia');

    await first.page.getByRole('button', { name: 'Menu' }).click();
    await first.page.getByRole('menuitem', { name: 'Devices' }).click();
    await first.page.getByTestId('device').nth(1).waitFor();
    await first.page.getByTestId('device').first().getByText(/Last active/).waitFor();

    // A wrong current password is refused in the form, and nothing ends.
    await first.page.getByTestId('password-old').fill('not-my-password');
    await first.page.getByTestId('password-new').fill('a-brand-new-secret');
    await first.page.getByTestId('password-submit').click();
    await first.page.locator('.form-error').waitFor();

    await first.page.getByTestId('password-old').fill('pw-pia-123');
    await first.page.getByTestId('password-new').fill('a-brand-new-secret');
    await first.page.getByTestId('password-submit').click();
    await first.page.getByText('Password changed').waitFor();
    await second.page.getByTestId('login-submit').waitFor();
    await second.page.getByText('logged out from another device').waitFor();
    // The list reloads with this browser alone.
    await first.page.waitForFunction(() => document.querySelectorAll('[data-testid="device"]').length === 1);

    await second.page.getByTestId('login-username').fill('pia');
    await second.page.getByTestId('login-password').fill('pw-pia-123');
    await second.page.getByTestId('login-submit').click();
    await second.page.locator('.form-error').waitFor();
    await login(second.page, 'pia', 'a-brand-new-secret');

    // The dialog does not poll: reopen it to see the new session.
    await first.page.getByRole('button', { name: 'Close' }).click();
    await first.page.getByRole('button', { name: 'Menu' }).click();
    await first.page.getByRole('menuitem', { name: 'Devices' }).click();
    await first.page.getByTestId('device').nth(1).waitFor();
    await first.page.getByTestId('logout-everywhere').click();
    await first.page.getByTestId('login-submit').waitFor();
    await second.page.getByTestId('login-submit').waitFor();
    assert.equal(await first.page.getByTestId('tab-chats').count(), 0);

    await Promise.all([first.context.close(), second.context.close()]);
  });
});
