/**
 * Regenerates docs/screenshots/*.png: seeds a throwaway server with a few people, chats, a group, an image, a
 * voice note and a file, then photographs the web client (chats, contacts, the devices dialog) in Debian's Chromium at desktop and phone widths.
 *
 *   npx tsx scripts/screenshots.ts              # every screenshot
 *   npx tsx scripts/screenshots.ts qr-login     # only the named ones (the run is the same; other files are left alone)
 *   npx tsx scripts/screenshots.ts admin admin-dark   # the admin dashboard only (a minute of live traffic from SDK clients)
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { chromium, type Page } from 'playwright-core';
import { MediaClient } from '../src/sdk/media.ts';
import { api, befriend, userDevice, type Device } from '../test/helpers/server.ts';
import { CHROMIUM, CHROMIUM_ARGS, buildWeb, startWebServer } from '../test/browser/harness.ts';
import { startClient, type TestClient } from '../test/sdk/helpers.ts';
import type { Browser } from 'playwright-core';

const OUT = join(import.meta.dirname, '../docs/screenshots');
let n = 0;
/** Screenshot names given on the command line: only those are written. */
const ONLY = new Set(process.argv.slice(2));

async function seed(base: string) {
  const users: Record<string, Device> = {};
  const names: Record<string, string> = { alice: 'Alice Liddell', bob: 'Bob Marley', carol: 'Carol Danvers', dave: 'Dave Grohl', erin: 'Erin Brockovich' };
  for (const [u, displayName] of Object.entries(names)) {
    await api(base, '/api/register', { username: u, password: `pw-${u}-123`, displayName });
    users[u] = await userDevice(base, u, 'seed', `pw-${u}-123`);
  }
  const { alice, bob, carol, dave, erin } = users as Record<string, Device>;
  await befriend(base, alice!, bob!);
  await befriend(base, carol!, alice!);
  await befriend(base, alice!, dave!);
  await befriend(base, bob!, carol!);
  await api(base, '/api/contacts/request', { username: 'alice', note: 'We met at the climate meetup 🌱' }, erin!.sid);

  const send = async (from: Device, to: string, content: string, type = 1, mediaId?: string) => {
    const r = await api(base, '/api/sendmsg', { clientMsgId: `seed-${++n}`, to, type, content, ...(mediaId ? { mediaId } : {}) }, from.sid);
    if (r.body.ret !== 0) throw new Error(JSON.stringify(r.body));
    return r.body.msgId as string;
  };
  const media = (d: Device) => new MediaClient({ baseUrl: base, sid: d.sid, sendmsg: async () => ({ msgId: '0', seq: 0, createTime: 0 }) });

  await send(dave!, 'alice', 'Are we still on for band practice Thursday? 🥁');
  await send(alice!, 'dave', 'Yes! 7pm at the usual place');

  const group = (await api(base, '/api/groups/create', { name: 'Weekend trip 🏕️', members: ['bob', 'carol'] }, alice!.sid)).body.groupId as string;
  await send(alice!, group, 'Okay team, the cabin is booked for Saturday 🎉');
  await send(bob!, group, 'Amazing. I can drive, there is room for 4');
  await send(carol!, group, 'I found the trail map: https://www.nps.gov/yose/planyourvisit/maps.htm');
  const landscape = await sharp(
    Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="960" height="640">
      <defs><linearGradient id="s" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#fbbf77"/><stop offset="1" stop-color="#f472b6"/></linearGradient></defs>
      <rect width="960" height="640" fill="url(#s)"/><circle cx="700" cy="230" r="70" fill="#fff7d6"/>
      <path d="M0 460 L200 260 L330 380 L480 200 L700 430 L820 320 L960 420 L960 640 L0 640Z" fill="#3b3f6b"/>
      <path d="M0 520 L160 420 L300 500 L470 380 L640 500 L800 430 L960 500 L960 640 L0 640Z" fill="#1f2547"/>
      <path d="M0 600 Q480 540 960 600 L960 640 L0 640Z" fill="#0f766e"/></svg>`),
  )
    .png()
    .toBuffer();
  const img = await media(carol!).upload(new Uint8Array(landscape), { mime: 'image/png' });
  await send(carol!, group, 'View from the ridge last year', 3, img.mediaId);
  const pdf = new TextEncoder().encode('%PDF-1.4\n% Synchat screenshot fixture\n' + 'x'.repeat(180_000));
  const file = await media(alice!).upload(pdf, { mime: 'application/pdf', name: 'Cabin itinerary.pdf' });
  await send(alice!, group, 'Cabin itinerary.pdf', 49, file.mediaId);
  await send(bob!, group, 'Perfect 👌');

  await send(bob!, 'alice', 'Hey Alice! Did you see the new Synchat build?');
  await send(alice!, 'bob', 'I did — messages show up instantly on my phone and laptop 😄');
  await send(bob!, 'alice', 'Even after I switched off wifi on the train. The outbox just waited and sent everything once I was back.');
  await send(alice!, 'bob', 'That is the SyncKey magic ✨ every device says "I have everything up to here"');
  await send(bob!, 'alice', '👏👏👏');
  // A short voice note (1.6 s WAV tone).
  const rate = 8000;
  const samples = Math.round(rate * 1.6);
  const wav = Buffer.alloc(44 + samples * 2);
  wav.write('RIFF', 0);
  wav.writeUInt32LE(36 + samples * 2, 4);
  wav.write('WAVEfmt ', 8);
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20);
  wav.writeUInt16LE(1, 22);
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(rate * 2, 28);
  wav.writeUInt16LE(2, 32);
  wav.writeUInt16LE(16, 34);
  wav.write('data', 36);
  wav.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i++) wav.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2);
  const voice = await media(bob!).upload(new Uint8Array(wav), { mime: 'audio/wav' });
  await send(bob!, 'alice', '1600', 34, voice.mediaId);
  const last = await send(alice!, 'bob', 'Let me try it on the group chat too. See you Saturday!');
  await api(base, '/api/read', { peer: 'alice', msgId: last }, bob!.sid);
  await send(carol!, 'alice', 'Can you send me the itinerary?');
  return { group };
}

async function shot(page: Page, name: string) {
  if (ONLY.size > 0 && !ONLY.has(name)) return;
  await page.waitForTimeout(400);
  await page.screenshot({ path: join(OUT, `${name}.png`) });
  console.log(`docs/screenshots/${name}.png`);
}

/** The admin dashboard's screenshots, in light and dark. */
const ADMIN_SHOTS = ['admin', 'admin-dark'];

/**
 * The admin dashboard (docs/operations.md "Dashboard"): eight SDK clients (TCP, WebSocket and long-poll) in a group
 * and in pairs, quiet for a few seconds (the capacity estimate measures the idle cost from them), then sending at
 * a rate that rises and falls for a minute.
 */
async function adminShots(browser: Browser) {
  const token = 'screenshots-admin-token-0123456789';
  const server = await startWebServer({ heartbeatMs: 30_000, adminToken: token });
  const clients: TestClient[] = [];
  try {
    const transports = ['tcp', 'ws', 'http'] as const;
    for (let i = 0; i < 8; i++) clients.push(await startClient(transports[i % 3]!, server.url, `ops_${i}`, `d${i}`));
    const [first, ...rest] = clients.map((c) => c.client);
    for (const c of rest) {
      await first!.requestContact(c.username!);
      await c.acceptContact(first!.username!);
    }
    const group = await first!.createGroup('Load', rest.map((c) => c.username!));
    const pages = await Promise.all(
      (['light', 'dark'] as const).map(async (scheme) => {
        // Tall enough for the tables, the estimate and two rows of charts.
        const context = await browser.newContext({ viewport: { width: 1440, height: 1280 }, deviceScaleFactor: 1, colorScheme: scheme, locale: 'en-GB', timezoneId: 'UTC' });
        const page = await context.newPage();
        await page.goto(`${server.url}/admin`);
        await page.getByTestId('admin-token').fill(token);
        await page.getByTestId('admin-token-submit').click();
        await page.getByTestId('node-row').waitFor();
        return { name: scheme === 'dark' ? 'admin-dark' : 'admin', page };
      }),
    );
    await new Promise((r) => setTimeout(r, 8000));
    const started = Date.now();
    let isSending = true;
    const traffic = (async () => {
      for (let sent = 0; isSending; sent++) {
        // 5 to 45 sends a second, a wave with a period of 40 s; every fourth one into the group.
        const perSec = 25 + 20 * Math.sin(((Date.now() - started) / 40_000) * 2 * Math.PI);
        const from = clients[sent % clients.length]!.client;
        const to = sent % 4 === 0 ? group : from === first ? rest[sent % rest.length]!.username! : first!.username!;
        await from.sendText(to, `load ${sent}`);
        await new Promise((r) => setTimeout(r, 1000 / perSec));
      }
    })();
    await new Promise((r) => setTimeout(r, 60_000));
    // Both while the traffic still flows.
    await Promise.all(pages.map(({ name, page }) => shot(page, name)));
    isSending = false;
    await traffic;
    for (const { page } of pages) await page.context().close();
  } finally {
    for (const c of clients) await c.client.close().catch(() => undefined);
    await server.stop();
  }
}

async function main() {
  buildWeb();
  mkdirSync(OUT, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    if (ONLY.size === 0 || ADMIN_SHOTS.some((name) => ONLY.has(name))) await adminShots(browser);
    if (ONLY.size === 0 || [...ONLY].some((name) => !ADMIN_SHOTS.includes(name))) await chatShots(browser);
  } finally {
    await browser.close();
  }
}

/** The chat app's screenshots, from a seeded server. */
async function chatShots(browser: Browser) {
  const server = await startWebServer({ heartbeatMs: 30_000 });
  try {
    const { group } = await seed(server.url);
    for (const scheme of ['light', 'dark'] as const) {
      const suffix = scheme === 'dark' ? '-dark' : '';
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1, colorScheme: scheme, locale: 'en-GB', timezoneId: 'UTC' });
      const page = await context.newPage();
      await page.goto(server.url);
      if (scheme === 'light') await shot(page, 'login');
      await page.getByTestId('login-username').fill('alice');
      await page.getByTestId('login-password').fill('pw-alice-123');
      await page.getByTestId('login-submit').click();
      await page.locator(`[data-testid="conversation-item"][data-peer="${group}"]`).waitFor();
      await page.locator('[data-testid="conversation-item"][data-peer="bob"]').click();
      await page.getByTestId('message-voice').waitFor();
      await shot(page, `chat${suffix}`);
      if (scheme === 'dark') {
        await context.close();
        continue;
      }
      await page.locator(`[data-testid="conversation-item"][data-peer="${group}"]`).click();
      await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('[data-testid="message-image"]')].every((i) => i.complete && i.naturalWidth > 0));
      await shot(page, 'group');
      await page.getByTestId('tab-contacts').click();
      await shot(page, 'contacts');
      // The devices dialog: last seen per device, log out one or everywhere, change the password (docs/security.md).
      await page.getByRole('button', { name: 'Menu' }).click();
      await page.getByRole('menuitem', { name: 'Devices' }).click();
      await page.getByTestId('password-form').waitFor();
      await shot(page, 'devices');
      await page.getByRole('button', { name: 'Close' }).click();
      // QR login (docs/web.md "QR login"): the code on a logged-out browser, and the confirm dialog of a logged-in
      // one that opened the code's link.
      const asking = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1, locale: 'en-GB', timezoneId: 'UTC' });
      const ap = await asking.newPage();
      await ap.goto(server.url);
      await ap.getByTestId('qr-login-open').click();
      const panel = ap.locator('[data-testid="qr-login"][data-state="waiting"]');
      await panel.waitFor();
      await shot(ap, 'qr-login');
      await page.goto(`${server.url}/#qr=${await panel.getAttribute('data-qr-uuid')}`);
      await page.getByTestId('qr-asking').waitFor();
      await shot(page, 'qr-confirm');
      await asking.close();
      await context.close();

      const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'en-GB', timezoneId: 'UTC' });
      const p = await phone.newPage();
      await p.goto(server.url);
      await p.getByTestId('login-username').fill('alice');
      await p.getByTestId('login-password').fill('pw-alice-123');
      await p.getByTestId('login-submit').click();
      await p.locator(`[data-testid="conversation-item"][data-peer="${group}"]`).waitFor();
      await shot(p, 'phone-list');
      await p.locator(`[data-testid="conversation-item"][data-peer="${group}"]`).click();
      await p.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('[data-testid="message-image"]')].every((i) => i.complete && i.naturalWidth > 0));
      await shot(p, 'phone-chat');
      await phone.close();
    }
  } finally {
    await server.stop();
  }
}

await main();
