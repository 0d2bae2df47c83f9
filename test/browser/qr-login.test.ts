/**
 * QR login in the web client, in Chromium (docs/web.md "QR login"): a logged-out browser shows a QR code (which
 * decodes to its `#qr=` link), a logged-in browser of the same user pastes that link, sees which device asks and
 * confirms, and the first browser lands in the chat, where its message reaches a contact and the confirming browser.
 * Opening the link itself opens the confirm dialog; Cancel leaves the code waiting. No CSP violation on the way.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import jsqr from 'jsqr';
import sharp from 'sharp';
import type { Page } from 'playwright-core';
import { api, befriend, userDevice } from '../helpers/server.ts';
import { messages, login, openApp, openChat, sendText, webSuite } from './harness.ts';

/** The text the page's QR canvas encodes, decoded from its pixels. */
async function decodeQr(page: Page): Promise<string | undefined> {
  const dataUrl = await page.getByTestId('qr-code').evaluate((c) => (c as HTMLCanvasElement).toDataURL('image/png'));
  const { data, info } = await sharp(Buffer.from(dataUrl.split(',')[1]!, 'base64')).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  // A CommonJS module: under NodeNext its default import is `module.exports`, whose `default` is the function.
  return jsqr.default(new Uint8ClampedArray(data.buffer, data.byteOffset, data.length), info.width, info.height)?.data;
}

/** CSP violations seen by a page (recorded from before any script runs). */
async function watchCsp(page: Page): Promise<() => Promise<string[]>> {
  await page.addInitScript(() => {
    const seen: string[] = ((window as any).__cspViolations = []);
    document.addEventListener('securitypolicyviolation', (e) => seen.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  return () => page.evaluate(() => (window as any).__cspViolations as string[]);
}

describe('web client: QR login', () => {
  const env = webSuite();

  test('a browser logs in by a QR code that a logged-in browser confirms, and chats', async (t) => {
    const { browser, server } = env;
    if (!browser) return t.skip('no Chromium');
    const pia = await userDevice(server.url, 'qrpia', 'setup', 'pw-qrpia-123');
    const jon = await userDevice(server.url, 'qrjon', 'setup', 'pw-qrjon-123');
    await api(server.url, '/api/profile', { displayName: 'Pia' }, pia.sid);
    await befriend(server.url, pia, jon);

    const phone = await openApp(browser, server.url);
    await login(phone.page, 'qrpia');
    const desk = await openApp(browser, 'about:blank');
    const cspOf = await watchCsp(desk.page);
    await desk.page.goto(server.url);
    await desk.page.getByTestId('qr-login-open').click();
    const panel = desk.page.locator('[data-testid="qr-login"][data-state="waiting"]');
    await panel.waitFor();
    const uuid = (await panel.getAttribute('data-qr-uuid'))!;
    assert.match(uuid, /^[0-9a-f]{32}$/);
    const link = await desk.page.getByTestId('qr-link').inputValue();
    assert.equal(link, `${server.url}/#qr=${uuid}`);
    assert.equal(await decodeQr(desk.page), link, 'the QR code carries the link');

    await phone.page.getByRole('button', { name: 'Menu' }).click();
    await phone.page.getByTestId('menu-qr-confirm').click();
    await phone.page.getByTestId('qr-paste').fill(link);
    await phone.page.getByTestId('qr-paste-submit').click();
    await phone.page.getByTestId('qr-asking').waitFor();
    // The scan alone logs nothing in: the desk says who scanned and waits.
    await desk.page.getByTestId('qr-scanned').getByText('Pia').waitFor();
    assert.equal(await desk.page.getByTestId('tab-chats').count(), 0);
    const askingName = await phone.page.getByTestId('qr-asking-device').textContent();
    assert.ok(askingName && askingName.length > 0);
    await phone.page.getByTestId('qr-confirm').click();
    await phone.page.getByTestId('qr-confirmed').getByRole('button', { name: 'Done' }).click();

    await desk.page.getByTestId('tab-chats').waitFor();
    await openChat(desk.page, 'qrjon');
    await sendText(desk.page, 'logged in by QR');
    await openChat(phone.page, 'qrjon');
    await messages(phone.page, 'logged in by QR').waitFor();
    assert.deepEqual(await cspOf(), [], 'no CSP violation');

    // The link opened on a logged-in browser goes straight to the dialog; Cancel leaves the other code waiting.
    const other = await openApp(browser, server.url);
    await other.page.getByTestId('qr-login-open').click();
    const second = other.page.locator('[data-testid="qr-login"][data-state="waiting"]');
    await second.waitFor();
    const secondUuid = (await second.getAttribute('data-qr-uuid'))!;
    await phone.page.goto(`${server.url}/#qr=${secondUuid}`);
    await phone.page.getByTestId('qr-asking').waitFor();
    await phone.page.getByTestId('qr-deny').click();
    await phone.page.getByTestId('qr-asking').waitFor({ state: 'detached' });
    assert.equal(await phone.page.evaluate(() => location.hash), '', 'the link is cleared from the address');
    await other.page.getByTestId('qr-scanned').waitFor();
    assert.equal(await other.page.getByTestId('tab-chats').count(), 0, 'not confirmed, not logged in');

    await Promise.all([phone.context.close(), desk.context.close(), other.context.close()]);
  });
});
