/**
 * Browser test harness: Debian's Chromium driven by playwright-core (never a downloaded browser), a real server
 * serving the built web client, and page helpers that go through the UI by its `data-testid` hooks (issue 5).
 */
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, type TestContext } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startServer, type TestServer } from '../helpers/server.ts';
import type { Config } from '../../src/server/config.ts';
import { FrameDecoder, parseBody } from '../../src/protocol/index.ts';

/** One packet of the long connection, as a test reads it off a routed WebSocket (`body`: parsed JSON, if it is). */
export interface SeenPacket {
  op: number;
  seq: number;
  body: any;
}

/**
 * Reads the packets of one direction of a WebSocket routed with `routeWebSocket`: feed it every message (a
 * packet may span messages) and it returns the packets completed so far.
 */
export function packetReader(): (message: string | Buffer) => SeenPacket[] {
  const decoder = new FrameDecoder(64 * 1024 * 1024);
  return (message) =>
    decoder.push(typeof message === 'string' ? Buffer.from(message) : message).packets.map((p) => {
      let body: unknown;
      try {
        body = parseBody(p.body);
      } catch {
        body = undefined; // a binary body (MEDIA_CHUNK)
      }
      return { op: p.op, seq: p.seq, body };
    });
}

/** Records every CSP violation and CSP console error of a page (the listener is installed before any script runs). */
export async function watchCsp(page: Page): Promise<() => Promise<string[]>> {
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Content-Security-Policy/i.test(m.text())) consoleErrors.push(m.text());
  });
  await page.addInitScript(() => {
    const seen: string[] = ((window as any).__cspViolations = []);
    document.addEventListener('securitypolicyviolation', (e) => seen.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  return async () => [...consoleErrors, ...((await page.evaluate(() => (window as any).__cspViolations as string[]).catch(() => [])) ?? [])];
}

/** Where Debian installs Chromium (`.ci/run` installs it in CI). */
export const CHROMIUM = process.env.SYNCHAT_CHROMIUM ?? '/usr/bin/chromium';

const ROOT = join(import.meta.dirname, '../..');
const WEB_ROOT = join(ROOT, 'web/dist');

/** The launch flags: no sandbox (containers), no GPU, no background traffic. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
];

/**
 * Skips the test (or fails it when CI=true) when Chromium is missing; otherwise builds the web client if it is
 * stale and launches the browser. Returns undefined after skipping.
 */
export async function launch(t: TestContext): Promise<Browser | undefined> {
  if (!existsSync(CHROMIUM)) {
    const msg = `Chromium not found at ${CHROMIUM} (apt-get install chromium, or set SYNCHAT_CHROMIUM)`;
    if (process.env.CI === 'true') throw new Error(`${msg}; browser tests cannot be skipped in CI`);
    // Called from a test, it skips that test; from a before hook (which has no skip), each test skips on the
    // undefined browser and the reason is printed once here.
    if (typeof (t as Partial<TestContext>).skip === 'function') t.skip(msg);
    else console.log(`# ${msg}: skipping`);
    return undefined;
  }
  buildWeb();
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

let isBuilt = false;

/** Builds web/dist when it is missing or older than its sources (once per process). */
export function buildWeb(): void {
  if (isBuilt) return;
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/build-web.mjs'), '--if-stale'], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('building the web client failed');
  isBuilt = true;
}

/** A server for browser tests: the built client at `/`, heartbeats every second so a dead link shows quickly. */
export function startWebServer(overrides: Partial<Config> = {}): Promise<TestServer> {
  return startServer({ webRoot: WEB_ROOT, heartbeatMs: 1000, ...overrides });
}

/** A new browser context (one "browser" = one device) with one page open at the app. */
export async function openApp(browser: Browser, url: string, viewport = { width: 1280, height: 800 }): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, locale: 'en-GB', timezoneId: 'UTC' });
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`[page error] ${err.message}`));
  await page.goto(url);
  return { context, page };
}

/** Registers through the UI (which signs in) and waits for the chat shell. */
export async function register(page: Page, username: string, displayName: string, password = `pw-${username}-123`): Promise<void> {
  await page.getByRole('tab', { name: 'Create account' }).click();
  await page.getByTestId('register-username').fill(username);
  await page.getByTestId('register-display-name').fill(displayName);
  await page.getByTestId('register-password').fill(password);
  await page.getByTestId('register-submit').click();
  await page.getByTestId('tab-chats').waitFor();
}

/** Logs in through the UI and waits for the chat shell. */
export async function login(page: Page, username: string, password = `pw-${username}-123`): Promise<void> {
  await page.getByTestId('login-username').fill(username);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('tab-chats').waitFor();
}

/** Sends a contact request from the Contacts tab. */
export async function requestContact(page: Page, username: string, note = ''): Promise<void> {
  await page.getByTestId('tab-contacts').click();
  await page.getByTestId('contact-search').fill(username);
  if (note) await page.getByTestId('contact-note').fill(note);
  await page.getByTestId('contact-request-submit').click();
  await page.getByText(/Request sent/).waitFor();
  await page.getByTestId('tab-chats').click();
}

/** Accepts the pending request from `from`. */
export async function acceptContact(page: Page, from: string): Promise<void> {
  await page.getByTestId('tab-contacts').click();
  await page.locator(`[data-testid="contact-request"][data-from="${from}"] [data-testid="contact-accept"]`).click();
  await page.getByTestId('tab-chats').click();
}

/** Two users, each registered in a browser of their own, made contacts through the UI (`a` asks, `b` accepts). */
export async function twoContacts(browser: Browser, url: string, a: [username: string, displayName: string], b: [username: string, displayName: string]): Promise<{ a: { context: BrowserContext; page: Page }; b: { context: BrowserContext; page: Page } }> {
  const pa = await openApp(browser, url);
  const pb = await openApp(browser, url);
  await register(pa.page, ...a);
  await register(pb.page, ...b);
  await requestContact(pa.page, b[0]);
  await acceptContact(pb.page, a[0]);
  return { a: pa, b: pb };
}

/** Opens a conversation from the list. */
export async function openChat(page: Page, peer: string): Promise<void> {
  await page.locator(`[data-testid="conversation-item"][data-peer="${peer}"]`).click();
  await page.getByTestId('composer-input').waitFor();
}

/** Types and sends a text with Enter. */
export async function sendText(page: Page, text: string): Promise<void> {
  const input = page.getByTestId('composer-input');
  await input.fill(text);
  await input.press('Enter');
}

/** Holds the mic button of the open chat for `ms` (the context must have been granted the microphone). */
export async function recordVoice(page: Page, ms: number): Promise<void> {
  await page.getByTestId('voice-record').hover();
  await page.mouse.down();
  await page.getByText(/Recording/).waitFor();
  await page.waitForTimeout(ms);
  await page.mouse.up();
}

/** The messages of the open chat with the given text. */
export function messages(page: Page, text?: string) {
  const all = page.getByTestId('message');
  return text === undefined ? all : all.filter({ hasText: text });
}

/**
 * Registers one suite's hooks: Chromium (undefined when it is missing outside CI, so tests skip) and a web
 * server on an ephemeral port, both closed after the suite.
 */
export function webSuite(): { browser: Browser | undefined; server: TestServer } {
  const env: { browser: Browser | undefined; server: TestServer } = { browser: undefined, server: undefined as unknown as TestServer };
  before(async (t) => {
    env.browser = await launch(t as never);
    if (env.browser) env.server = await startWebServer();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.stop();
  });
  return env;
}
