/**
 * Server memory of N parked synccheck long-polls: one server process (SYNCHAT_WORKERS=0), N device sessions,
 * each holding one synccheck on its own HTTP connection. Reports RSS per parked poll and the kernel's TCP share.
 *
 *   npm run bench -- longpoll-memory [--polls 10000] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { call, kernelSocketBytes, parseArgs, rssBytes, spawnServer } from '../lib/proc.ts';

/** Runs the scenario. */
export async function run(argv: string[]): Promise<void> {
  const o = parseArgs(argv, { polls: '10000', json: '' });
  const polls = Number(o.polls);
  if (polls > 18_000) throw new Error('one client process holds at most 20,000 sockets here: use --polls ≤ 18000');
  const server = await spawnServer({ SYNCHAT_WORKERS: '0' });
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const open: http.ClientRequest[] = [];
  try {
    await call(server.url, '/api/register', { username: 'poller', password: 'bench-password', displayName: 'Poller' });
    const sids: string[] = [];
    for (let i = 0; i < polls; i++) {
      const r = await call(server.url, '/api/login', { username: 'poller', password: 'bench-password', deviceId: `d${i}` });
      sids.push(r.sid);
      if (i % 1000 === 999) process.stdout.write(`\rlogged in ${i + 1}/${polls}`);
    }
    process.stdout.write('\n');
    await new Promise((r) => setTimeout(r, 2000));
    const rss0 = rssBytes(server.pid);
    const kernel0 = kernelSocketBytes();
    let parked = 0;
    await new Promise<void>((resolve) => {
      let started = 0;
      const next = () => {
        while (started < polls && started - parked < 500) {
          const sid = sids[started++]!;
          const req = http.get(`${server.url}/api/synccheck?syncKey=0&timeout=60000`, { agent, headers: { authorization: `Bearer ${sid}` } });
          req.on('error', () => {});
          req.on('socket', (s) => s.once('connect', () => {
            parked++;
            if (parked === polls) resolve();
            else next();
          }));
          open.push(req);
        }
      };
      next();
    });
    // Let the server park them all (attach over the same loop) and settle.
    await new Promise((r) => setTimeout(r, 5000));
    const rss1 = rssBytes(server.pid);
    const kernel1 = kernelSocketBytes();
    const row = {
      polls,
      serverRssBeforeMiB: +(rss0 / 2 ** 20).toFixed(1),
      serverRssAfterMiB: +(rss1 / 2 ** 20).toFixed(1),
      serverBytesPerPoll: Math.round((rss1 - rss0) / polls),
      kernelBytesPerSocket: Math.round((kernel1 - kernel0) / (2 * polls)),
    };
    console.table([row]);
    if (o.json) writeFileSync(o.json, JSON.stringify({ scenario: 'longpoll-memory', date: new Date().toISOString(), row }, null, 2));
  } finally {
    for (const req of open) req.destroy();
    await server.stop();
  }
}
