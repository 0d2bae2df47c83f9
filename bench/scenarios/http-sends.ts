/**
 * Committed sends per second over HTTP, group commit on vs off, side by side in one run (the machine is noisy).
 * For each mode: a fresh server process (synchronous=FULL), `--pairs` contact pairs, `--concurrency` closed-loop
 * senders for `--seconds`; every answered send is committed (durable) when answered.
 *
 *   npm run bench -- http-sends [--pairs 50] [--concurrency 64] [--seconds 10] [--workers 0] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import { call, parseArgs, percentile, spawnServer, treeCpuSeconds } from '../lib/proc.ts';

async function measure(mode: 'on' | 'off', o: Record<string, string>): Promise<Record<string, number | string>> {
  const server = await spawnServer({ SYNCHAT_GROUP_COMMIT: mode, SYNCHAT_WORKERS: o.workers! });
  try {
    const pairs = Number(o.pairs);
    const sids: { sid: string; to: string }[] = [];
    for (let i = 0; i < pairs; i++) {
      const a = `bench_a${i}`;
      const b = `bench_b${i}`;
      for (const u of [a, b]) await call(server.url, '/api/register', { username: u, password: 'bench-password', displayName: u });
      const la = await call(server.url, '/api/login', { username: a, password: 'bench-password', deviceId: 'bench' });
      const lb = await call(server.url, '/api/login', { username: b, password: 'bench-password', deviceId: 'bench' });
      await call(server.url, '/api/contacts/request', { username: b }, la.sid);
      await call(server.url, '/api/contacts/accept', { username: a }, lb.sid);
      sids.push({ sid: la.sid, to: b }, { sid: lb.sid, to: a });
    }
    const seconds = Number(o.seconds);
    const concurrency = Number(o.concurrency);
    const latencies: number[] = [];
    let errors = 0;
    let n = 0;
    const cpu0 = treeCpuSeconds(server.pid);
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async (_, w) => {
        const me = sids[w % sids.length]!;
        while (performance.now() < end) {
          const s = performance.now();
          const r = await call(server.url, '/api/sendmsg', { clientMsgId: `w${w}-${n++}`, to: me.to, type: 1, content: 'bench message' }, me.sid);
          if (r.ret === 0) latencies.push(performance.now() - s);
          else errors++;
        }
      }),
    );
    const elapsed = (performance.now() - t0) / 1000;
    const cpu = treeCpuSeconds(server.pid) - cpu0;
    latencies.sort((a, b) => a - b);
    return {
      groupCommit: mode,
      sendsPerSec: Math.round(latencies.length / elapsed),
      errors,
      p50Ms: +percentile(latencies, 50).toFixed(2),
      p99Ms: +percentile(latencies, 99).toFixed(2),
      serverCpuSecPerKSends: +((cpu / latencies.length) * 1000).toFixed(3),
    };
  } finally {
    await server.stop();
  }
}

/** Runs both modes and prints a table. */
export async function run(argv: string[]): Promise<void> {
  const o = parseArgs(argv, { pairs: '50', concurrency: '64', seconds: '10', workers: '0', json: '' });
  const rows = [];
  for (const mode of ['on', 'off'] as const) {
    process.stdout.write(`group commit ${mode}: running ${o.seconds} s with ${o.concurrency} senders…\n`);
    rows.push(await measure(mode, o));
  }
  console.table(rows);
  if (o.json) writeFileSync(o.json, JSON.stringify({ scenario: 'http-sends', options: o, date: new Date().toISOString(), rows }, null, 2));
}
