/**
 * The web client under its Content-Security-Policy (src/transports/http/browser-headers.ts): it loads, logs in,
 * talks over its WebSocket, sends and shows a message, an image (blob: previews and fetched media) and a voice note
 * that plays (blob: media) without one CSP violation. Violations are caught both as `securitypolicyviolation`
 * events and as console errors.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { userDevice } from '../helpers/server.ts';
import { acceptContact, login, messages, openApp, openChat, recordVoice, register, requestContact, sendText, watchCsp, webSuite } from './harness.ts';

describe('web client under its Content-Security-Policy', () => {
  const env = webSuite();

  test('loads, logs in, sends a message, an image and a voice note with no CSP violation', async (t) => {
    const { browser, server } = env;
    if (!browser) return t.skip('no Chromium');
    await userDevice(server.url, 'cspivy', 'setup', 'pw-cspivy-123');
    const ivy = await openApp(browser, 'about:blank');
    const jon = await openApp(browser, 'about:blank');
    await ivy.context.grantPermissions(['microphone']);
    const ivyCsp = await watchCsp(ivy.page);
    const jonCsp = await watchCsp(jon.page);
    const page = await ivy.page.goto(server.url);
    assert.match(page?.headers()['content-security-policy'] ?? '', /script-src 'self'/);
    await jon.page.goto(server.url);

    await login(ivy.page, 'cspivy');
    await register(jon.page, 'cspjon', 'Jon');
    await requestContact(ivy.page, 'cspjon');
    await acceptContact(jon.page, 'cspivy');
    await openChat(ivy.page, 'cspjon');
    await openChat(jon.page, 'cspivy');
    // The long connection is the WebSocket (connect-src 'self' lets ws: to this origin through).
    await ivy.page.waitForFunction(() => (window as any).synchat.client.transport === 'ws');

    await sendText(ivy.page, 'under a policy');
    await messages(jon.page, 'under a policy').waitFor();

    const png = await sharp({ create: { width: 320, height: 200, channels: 3, background: { r: 15, g: 118, b: 110 } } }).png().toBuffer();
    await ivy.page.getByTestId('image-input').setInputFiles({ name: 'teal.png', mimeType: 'image/png', buffer: png });
    const got = jon.page.locator('[data-testid="message"][data-from="cspivy"]').getByTestId('message-image');
    await got.waitFor({ timeout: 30_000 });
    for (const p of [ivy.page, jon.page]) {
      await p.waitForFunction(() => {
        const img = document.querySelector<HTMLImageElement>('[data-testid="message-image"]');
        return !!img && img.complete && img.naturalWidth > 0;
      });
    }
    await got.click();
    await jon.page.waitForFunction(() => (document.querySelector<HTMLImageElement>('[data-testid="image-viewer"]')?.naturalWidth ?? 0) === 320);
    await jon.page.keyboard.press('Escape');

    await recordVoice(ivy.page, 1200);
    const voice = jon.page.locator('[data-testid="message"][data-from="cspivy"]').getByTestId('message-voice');
    await voice.waitFor({ timeout: 30_000 });
    await voice.getByRole('button', { name: 'Play voice message' }).click();
    await voice.getByRole('button', { name: 'Pause voice message' }).waitFor();

    assert.deepEqual(await ivyCsp(), []);
    assert.deepEqual(await jonCsp(), []);
    await Promise.all([ivy.context.close(), jon.context.close()]);
  });
});
