/**
 * The web client when its server goes away (ERROR 1102, as a draining server sends it; docs/sdk.md "Going away"):
 * the app reconnects by itself and shows only a quiet "Reconnecting…", never its "Connection lost" warning.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RET } from '../../src/protocol/index.ts';
import type { Connections } from '../../src/transports/conn/connections.ts';
import { waitUntil } from '../helpers/wait.ts';
import { openApp, register, webSuite } from './harness.ts';

describe('web client: a server going away', () => {
  const env = webSuite();

  test('shows a quiet "Reconnecting…" for ERROR 1102, no connection-lost warning, and is back online by itself', async (t) => {
    const { browser, server } = env;
    if (!browser) return t.skip('no Chromium');
    const { context, page } = await openApp(browser, server.url);
    try {
      await register(page, 'gina', 'Gina');
      const connections = server.connections as Connections;
      await waitUntil(() => connections.list().some((c) => c.isOpen), 'the app holds a long connection');
      await page.waitForSelector('[data-testid="connection-banner"]', { state: 'detached' });
      // Every state the banner takes, as it renders.
      await page.evaluate(() => {
        const seen: string[] = ((window as any).bannerSeen = []);
        new MutationObserver(() => {
          const b = document.querySelector('[data-testid="connection-banner"]');
          if (b) seen.push(`${b.className}|${b.hasAttribute('data-moving') ? 'moving' : ''}|${b.textContent}`);
        }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
      });
      const uin = connections.list().find((c) => c.isOpen)!.uin;
      for (const c of connections.connectionsOf(uin)) c.fail(RET.GOING_AWAY, 'this server is going away');
      await waitUntil(async () => ((await page.evaluate(() => (window as any).bannerSeen.length)) as number) > 0, 'the banner shows');
      await waitUntil(() => connections.connectionsOf(uin).length === 1, 'the app reconnected');
      await page.waitForSelector('[data-testid="connection-banner"]', { state: 'detached' });
      const seen = (await page.evaluate(() => (window as any).bannerSeen)) as string[];
      assert.ok(seen.some((s) => s.includes('moving') && s.includes('Reconnecting')), JSON.stringify(seen));
      assert.ok(!seen.some((s) => /lost/i.test(s)), `no warning: ${JSON.stringify(seen)}`);
    } finally {
      await context.close();
    }
  });
});
