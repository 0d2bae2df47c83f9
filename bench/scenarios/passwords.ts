/**
 * Password hashing cost (issue 11): for each scrypt cost log2(N) (r = 8, p = 1, as the server hashes), the time of
 * one hash on one thread, and the logins per second a one-process server answers at that cost (`--concurrency`
 * logins in flight for `--seconds`), with the server's CPU seconds, so that logins per CPU-second ("per core") and
 * the server's peak RSS can be read. Each cost gets a fresh server (SYNCHAT_PASSWORD_LOG2N) and a user registered
 * at that cost; every login is a real one (a hash plus a session write), from loopback.
 *
 *   npm run bench -- passwords [--costs 14,15,16,17] [--hashes 5] [--seconds 8] [--concurrency 4] [--json FILE]
 */
import { randomBytes, scrypt } from 'node:crypto';
import { call, cpuSeconds, parseArgs, rssBytes, spawnServer } from '../lib/proc.ts';
import { machine, writeResult } from '../lib/result.ts';

interface Row {
  log2N: number;
  /** 128 × N × r: what one hash holds while it runs. */
  memoryMiB: number;
  /** Median of `--hashes` hashes, one at a time, in this process. */
  hashMs: number;
  logins: number;
  loginsPerSec: number;
  serverCpuSec: number;
  /** Logins per CPU-second of the server: what one core answers. */
  loginsPerCoreSec: number;
  /** Login latency, median and worst, ms. */
  loginMsP50: number;
  loginMsMax: number;
  serverPeakRssMiB: number;
}

function hashOnce(log2N: number): Promise<number> {
  const N = 2 ** log2N;
  const t0 = performance.now();
  return new Promise((resolve, reject) =>
    scrypt('bench-password', randomBytes(16), 32, { N, r: 8, p: 1, maxmem: 256 * N * 8 + 1024 * 1024 }, (err) =>
      err ? reject(err) : resolve(performance.now() - t0),
    ),
  );
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function measure(log2N: number, o: Record<string, string>): Promise<Row> {
  const hashes: number[] = [];
  for (let i = 0; i < Number(o.hashes); i++) hashes.push(await hashOnce(log2N));
  const server = await spawnServer({ SYNCHAT_WORKERS: '0', SYNCHAT_PASSWORD_LOG2N: String(log2N) });
  try {
    const username = `pw_bench_${log2N}`;
    const password = 'bench-password';
    const reg = await call(server.url, '/api/register', { username, password, displayName: username });
    if (reg.ret !== 0) throw new Error(`register: ${JSON.stringify(reg)}`);
    let peakRss = rssBytes(server.pid);
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssBytes(server.pid))), 50);
    const cpu0 = cpuSeconds(server.pid);
    const t0 = performance.now();
    const deadline = t0 + Number(o.seconds) * 1000;
    const latencies: number[] = [];
    let n = 0;
    await Promise.all(
      Array.from({ length: Number(o.concurrency) }, async () => {
        while (performance.now() < deadline) {
          const t = performance.now();
          // 40 device ids: below the 50-session cap, so no login ends another.
          const r = await call(server.url, '/api/login', { username, password, deviceId: `d${n++ % 40}` });
          if (r.ret !== 0) throw new Error(`login: ${JSON.stringify(r)}`);
          latencies.push(performance.now() - t);
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const serverCpuSec = cpuSeconds(server.pid) - cpu0;
    clearInterval(sampler);
    return {
      log2N,
      memoryMiB: (128 * 2 ** log2N * 8) / 2 ** 20,
      hashMs: Math.round(median(hashes) * 10) / 10,
      logins: latencies.length,
      loginsPerSec: Math.round((latencies.length / seconds) * 10) / 10,
      serverCpuSec: Math.round(serverCpuSec * 100) / 100,
      loginsPerCoreSec: Math.round((latencies.length / serverCpuSec) * 10) / 10,
      loginMsP50: Math.round(median(latencies)),
      loginMsMax: Math.round(Math.max(...latencies)),
      serverPeakRssMiB: Math.round(peakRss / 2 ** 20),
    };
  } finally {
    await server.stop();
  }
}

/** Runs the scenario (the `npm run bench -- passwords` entry). */
export async function run(argv: string[]): Promise<void> {
  const o = parseArgs(argv, { costs: '14,15,16,17', hashes: '5', seconds: '8', concurrency: '4', json: '' });
  console.log(`machine: ${JSON.stringify(machine())}`);
  const rows: Row[] = [];
  for (const log2N of o.costs!.split(',').map(Number)) {
    const row = await measure(log2N, o);
    console.log(JSON.stringify(row));
    rows.push(row);
  }
  console.log('\n| log2N | MiB a hash | hash ms | logins/s | logins per core-second | login ms p50 / max | server peak RSS MiB |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.log2N} | ${r.memoryMiB} | ${r.hashMs} | ${r.loginsPerSec} | ${r.loginsPerCoreSec} | ${r.loginMsP50} / ${r.loginMsMax} | ${r.serverPeakRssMiB} |`);
  }
  writeResult(o.json || undefined, 'passwords', o, { rows });
}

