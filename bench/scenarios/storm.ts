/**
 * `storm`: N clients connected, then all dropped at once (no close handshake, as when a gateway or a network
 * dies); while they are away each of their groups gets `--backlog` messages; then they all reconnect with their
 * keys at once and resync. Measures the time until every client is current again (its key reached the head
 * announced in AUTH_OK), the reconnect (AUTH) rate and the server's peak memory.
 *
 * Every client is its own device with its own session: `--users` users log in ⌈clients / users⌉ devices each
 * (the scrypt cost the bench server uses for that is printed and recorded in `targetSettings`).
 *
 *   npm run bench -- storm [--clients 5000] [--users 500] [--backlog 3] [--transport tcp|ws|longpoll]
 *                          [--server-workers 2] [--password-log2n 10] [--json FILE]
 */
import { befriendAll, createGroup, runTag, type SimUser } from '../lib/setup.ts';
import { connectDevices, openRun, population, settle, startWorkers, usage } from '../lib/harness.ts';
import { mergeHistograms, summarize } from '../lib/hist.ts';
import { call, parseArgs } from '../lib/proc.ts';
import { printBlock, writeResult } from '../lib/result.ts';
import { withProgress } from '../lib/progress.ts';
import type { DeviceSpec } from '../lib/pool.ts';

const DEFAULTS = { clients: '5000', users: '500', backlog: '3', transport: 'tcp', 'server-workers': '2', concurrency: '1000', timeout: '120', json: '' };

/** Runs the scenario. */
export async function run(argv: string[]): Promise<void> {
  const o = parseArgs(argv, DEFAULTS);
  const run = await openRun(o, 'synchat');
  try {
    const clients = Number(o.clients);
    const tag = runTag();
    const [hub] = await population(run, `st${tag}_hub`, 1);
    const devicesPerUser = Math.ceil(clients / Number(o.users));
    const members = await population(run, `st${tag}_`, Number(o.users), devicesPerUser);
    if (!hub) throw new Error('no hub user');
    let done = 0;
    await withProgress('hub contacts', members.length, () => ({ done }), () =>
      befriendAll(run.target.endpoint.httpUrl, members.map((u) => [hub, u] as [SimUser, SimUser]), (n) => (done = n)),
    );
    const groups: string[] = [];
    for (let i = 0; i < members.length; i += 500) groups.push(await createGroup(run.target.endpoint.httpUrl, hub, `storm ${i}`, members.slice(i, i + 500)));
    // Client i is device ⌊i / users⌋ of user i mod users: one session each, never shared.
    const specs: DeviceSpec[] = Array.from({ length: clients }, (_, i) => {
      const u = members[i % members.length]!;
      return { id: i, username: u.username, sid: u.sids[Math.floor(i / members.length)]! };
    });
    if (new Set(specs.map((s) => s.sid)).size !== clients) throw new Error('storm: two clients share a session');
    const pool = await startWorkers(run, o, clients);
    const c = await connectDevices(run, specs, 200);
    if (c.failed) throw new Error(`${c.failed} devices failed to connect: ${c.firstError}`);
    await settle(2000);
    const rssBeforeMiB = run.serverMon.sample().rssMiB;
    await pool.all(() => ({ cmd: 'drop' }));
    // News while they are away: every device must fetch `backlog` entries (plus its echo-free group messages).
    for (let b = 0; b < Number(o.backlog); b++)
      for (const g of groups) {
        const r = await call(run.target.endpoint.httpUrl, '/api/sendmsg', { clientMsgId: `storm-${b}-${g}`, to: g, type: 1, content: '0 while you were away' }, hub.sids[0]);
        if (r.ret !== 0) throw new Error(`backlog send: ret ${r.ret} ${r.errMsg}`);
      }
    await settle(1000);
    const peakBefore = run.serverMon.peakRssBytes;
    run.serverMon.peakRssBytes = 0;
    const t0 = performance.now();
    const counts = new Array<number>(pool.children.length).fill(0);
    pool.onProgress = (w, d) => (counts[w - 1] = Number(d.current ?? 0));
    const answers = await withProgress('reconnect+resync', clients, () => ({ done: counts.reduce((a, b) => a + b, 0), text: `server ${run.serverMon.samples.at(-1)?.rssMiB ?? 0} MiB` }), () =>
      pool.all(() => ({ cmd: 'reconnect', concurrency: Number(o.concurrency), timeoutMs: Number(o.timeout) * 1000 })),
    );
    const allCurrentMs = performance.now() - t0;
    const reconnected = answers.reduce((a, r) => a + r.reconnected, 0);
    const current = answers.reduce((a, r) => a + r.current, 0);
    const result = {
      target: run.target.kind,
      transport: run.transport,
      clients,
      users: members.length,
      sessions: new Set(specs.map((s) => s.sid)).size,
      devicesPerUser,
      backlogPerGroup: Number(o.backlog),
      reconnected,
      current,
      failed: answers.reduce((a, r) => a + r.failed, 0),
      firstError: answers.map((r) => r.firstError).find(Boolean) ?? '',
      allCurrentSeconds: +(allCurrentMs / 1000).toFixed(2),
      reconnectsPerSec: Math.round(reconnected / (allCurrentMs / 1000)),
      timeToCurrent: summarize(mergeHistograms(answers.map((r) => r.currentHist))),
      serverRssBeforeMiB: rssBeforeMiB,
      serverPeakRssMiB: +(run.serverMon.peakRssBytes / 2 ** 20).toFixed(1),
      serverPeakRssBeforeStormMiB: +(peakBefore / 2 ** 20).toFixed(1),
      targetSettings: run.target.settings,
      usage: usage(run),
    };
    const { usage: _u, ...shown } = result;
    printBlock(`storm · ${run.transport}`, shown);
    writeResult(o.json || undefined, 'storm', o, { runs: [result] });
  } finally {
    await run.close();
  }
}
