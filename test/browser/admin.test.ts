/**
 * The admin dashboard (`/admin`, docs/operations.md "Dashboard") in Chromium, under the server's CSP: signed in with
 * the admin token while SDK clients send over TCP and WebSocket, its tables and charts show numbers that move (read
 * from the DOM and from the charts' data, not from pixels), the capacity estimate measures live costs and a draining
 * node wears its badge; an admin user's chat session opens it without the token, a non-admin's is refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { TestServer } from '../helpers/server.ts';
import { befriend, startClient, type TestClient } from '../sdk/helpers.ts';
import { launch, openApp, register, startWebServer, watchCsp } from './harness.ts';

const TOKEN = 'dashboard-test-token-0123456789';

/** A number shown in the page: the text of the first element with `testId` (under `within`), or NaN. */
async function shown(page: Page, testId: string, within = 'body'): Promise<number> {
  const text = await page.locator(`${within} [data-testid="${testId}"]`).first().textContent();
  return Number((text ?? '').replace(/,/g, ''));
}

/** The points of the chart `testId`'s line `label`, from the chart's own data. */
function chartPoints(page: Page, testId: string, label: string): Promise<{ x: number; y: number }[]> {
  return page.evaluate(
    ([id, l]) => {
      const chart = (window as any).synchatAdmin.charts.get(id);
      return (chart?.data.datasets.find((d: any) => d.label === l)?.data ?? []) as { x: number; y: number }[];
    },
    [testId, label] as const,
  );
}

describe('admin dashboard', () => {
  let browser: Browser | undefined;
  let server: TestServer;
  const clients: TestClient[] = [];
  before(async (t) => {
    browser = await launch(t as unknown as TestContext);
    if (browser) server = await startWebServer({ adminToken: TOKEN, adminUsers: 'Dash_Boss' });
  });
  after(async () => {
    for (const c of clients) await c.client.close().catch(() => undefined);
    await browser?.close();
    await server?.stop();
  });

  test('shows live numbers that move while SDK clients send, with the capacity measured live, and no CSP violation', async (t) => {
    if (!browser) return t.skip('no Chromium');
    const ann = await startClient('tcp', server.url, 'dash_ann', 'a');
    const ben = await startClient('ws', server.url, 'dash_ben', 'b');
    clients.push(ann, ben);
    await befriend(ann.client, ben.client);

    const { context, page } = await openApp(browser, 'about:blank');
    const csp = await watchCsp(page);
    const answer = await page.goto(`${server.url}/admin`);
    assert.equal(answer?.status(), 200);
    assert.match(answer?.headers()['content-security-policy'] ?? '', /script-src 'self'/);
    await page.getByTestId('admin-token').fill(TOKEN);
    await page.getByTestId('admin-token-submit').click();
    const row = `[data-testid="node-row"][data-node="${server.core.nodeId}"]`;
    await page.locator(row).waitFor();
    assert.equal(await shown(page, 'node-tcp', row), 1, 'the TCP client');
    assert.equal(await shown(page, 'node-ws', row), 1, 'the WebSocket client');
    assert.equal(await shown(page, 'node-users-online', row), 2);

    let isSending = true;
    let sent = 0;
    const traffic = (async () => {
      while (isSending) {
        await ann.client.sendText('dash_ben', `tick ${sent++}`);
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    try {
      // Sends per second appear in the table and on the chart, and the totals keep moving.
      await page.waitForFunction((r) => Number(document.querySelector(`${r} [data-testid="node-sends-per-sec"]`)?.textContent) > 0, row, { timeout: 30_000 });
      const before = await page.locator('[data-testid="admin-totals"]').textContent();
      await page.waitForFunction((was) => document.querySelector('[data-testid="admin-totals"]')?.textContent !== was, before, { timeout: 30_000 });
      await page.waitForFunction(
        () => ((window as any).synchatAdmin.charts.get('chart-traffic')?.data.datasets.find((d: any) => d.label === 'sends/s')?.data ?? []).filter((p: any) => p.y > 0).length >= 3,
        undefined,
        { timeout: 30_000 },
      );
      const deliveries = await chartPoints(page, 'chart-traffic', 'deliveries/s');
      assert.ok(deliveries.some((p) => p.y > 0), 'deliveries on the chart');
      assert.ok((await chartPoints(page, 'chart-users', 'users online')).some((p) => p.y === 2));
      const cpuLines = await page.evaluate(() => (window as any).synchatAdmin.charts.get('chart-cpu').data.datasets.length as number);
      assert.ok(cpuLines >= 1, 'a CPU line per process');
      assert.match((await page.getByTestId('process-rss').first().textContent()) ?? '', /[0-9.]+ [KMG]B/);

      // Ten seconds with sends give the estimate live CPU costs; its answer is a number of users.
      await page.waitForFunction(() => document.querySelector('[data-testid="capacity-cpu-source"]')?.getAttribute('data-source')?.startsWith('live'), undefined, { timeout: 60_000 });
      const more = Number(await page.getByTestId('capacity-more-users').getAttribute('data-value'));
      assert.ok(Number.isInteger(more) && more > 0, `more users: ${more}`);
      // An edited assumption changes the answer: ten times the messages per user leave room for fewer users.
      await page.getByRole('button', { name: 'Edit assumptions' }).click();
      await page.getByTestId('assume-msgsPerUserDay').fill('600');
      await page.waitForFunction((m) => Number(document.querySelector('[data-testid="capacity-more-users"]')?.getAttribute('data-value')) < m, more, { timeout: 10_000 });
    } finally {
      isSending = false;
      await traffic;
    }
    assert.ok(sent > 0);
    // A node that starts to drain (SIGTERM's first step) wears the badge at the next update.
    await server.core.startDrain();
    await page.locator(`${row} [data-testid="draining-badge"]`).waitFor();
    assert.deepEqual(await csp(), []);
    await context.close();
  });

  test("opens with an admin user's chat session and refuses another user's", async (t) => {
    if (!browser) return t.skip('no Chromium');
    const boss = await openApp(browser, server.url);
    await register(boss.page, 'dash_boss', 'Boss');
    await boss.page.goto(`${server.url}/admin`);
    await boss.page.getByTestId('node-row').first().waitFor();
    assert.match((await boss.page.getByTestId('admin-status').textContent()) ?? '', /Live/);

    const other = await openApp(browser, server.url);
    await register(other.page, 'dash_other', 'Other');
    await other.page.goto(`${server.url}/admin`);
    const refusal = other.page.getByTestId('admin-refusal');
    await refusal.waitFor();
    assert.match((await refusal.textContent()) ?? '', /not an admin user/);
    await Promise.all([boss.context.close(), other.context.close()]);
  });
});
