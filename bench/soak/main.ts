/**
 * `npm run soak -- [--minutes 30] [--users 30] [--workers 2] [--sample-s 5] [--json FILE]`: the soak (soak.ts) with
 * a summary: per server process the slopes of RSS, heap and live heap over the second half (MiB per hour), open
 * descriptors before traffic and after every client left, send→ack p50/p99 per minute (first vs last), lost and
 * doubled sends. Writes a JSON record (machine, command, date, load average before and after, series, slopes) to
 * `--json` (default bench/results/issue12-soak-<minutes>min.json). Exits 1 when a send was lost or doubled.
 */
import { loadavg } from 'node:os';
import { parseArgs } from '../lib/proc.ts';
import { machine, printBlock } from '../lib/result.ts';
import { runSoak, secondHalfSlopes } from './soak.ts';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

const DEFAULTS = { minutes: '30', users: '30', workers: '2', 'sample-s': '5', 'send-gap-ms': '1000', 'round-s': '40', json: '' };

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2), DEFAULTS);
  const minutes = Number(o.minutes);
  const loadBefore = loadavg().map((x) => +x.toFixed(2));
  // The code measured is the tree when the server starts (it runs the working tree through tsx; others may commit
  // during a long run): the commit and the files under src/ that differ from it.
  const git = (...args: string[]) => execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  let code = { commit: '', uncommittedSrc: [] as string[] };
  try {
    code = { commit: git('rev-parse', 'HEAD'), uncommittedSrc: git('status', '--porcelain', '--', 'src').split('\n').filter(Boolean) };
  } catch {
    // not a checkout
  }
  const date = new Date().toISOString();
  const result = await runSoak({
    seconds: minutes * 60,
    users: Number(o.users),
    workers: Number(o.workers),
    sampleSeconds: Number(o['sample-s']),
    bucketSeconds: 60,
    sendGapMs: Number(o['send-gap-ms']),
    roundSeconds: Number(o['round-s']),
    log: (line) => console.log(line),
  });
  const loadAfter = loadavg().map((x) => +x.toFixed(2));
  const slopes = secondHalfSlopes(result);
  // Whole minutes only: the run's last bucket may hold just its final second.
  const full = result.latency.filter((b) => b.sends > 0 && b.t + 60 <= minutes * 60);
  const first = full[0];
  const last = full.at(-1);
  const file = o.json || `bench/results/issue12-soak-${minutes}min.json`;
  const record = {
    scenario: 'soak',
    date,
    command: `npm run soak -- ${process.argv.slice(2).join(' ')}`.trim(),
    machine: machine(),
    loadAvg: { before: loadBefore, after: loadAfter },
    code,
    slopes,
    latencyFirstMinute: first,
    latencyLastMinute: last,
    ...result,
  };
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
  for (const s of slopes) printBlock(`${s.role} · second half (${s.samples} samples)`, { 'RSS MiB/h': s.rssMiBPerHour, 'heap MiB/h': s.heapMiBPerHour, 'live heap MiB/h': s.liveHeapMiBPerHour });
  printBlock('soak', {
    minutes,
    'load avg before/after': `${loadBefore.join(' ')} / ${loadAfter.join(' ')}`,
    sends: `${result.counts.sends} (${result.counts.groupSends} group, ${result.counts.mediaSends} media), ${result.counts.sendErrors} failed`,
    'rounds/logins/logouts': `${result.counts.rounds} / ${result.counts.logins} / ${result.counts.logouts} (stops ${result.counts.stops}, drops ${result.counts.drops})`,
    vanished: `${result.counts.vanished} (${result.counts.vanishedClosedByServer} closed by the server during the run)`,
    'fds start → end': `${result.fds.start} → ${result.fds.end} ${JSON.stringify(result.fds.perProcessEnd)}`,
    'p50/p99 first minute': first ? `${first.p50Ms} / ${first.p99Ms} ms (${first.sends} sends)` : '-',
    'p50/p99 last minute': last ? `${last.p50Ms} / ${last.p99Ms} ms (${last.sends} sends)` : '-',
    'lost / doubled': `${result.check.lost} / ${result.check.doubled} of ${result.check.expectedCopies} copies of ${result.check.acked} sends ${result.check.firstProblem}`,
    errors: result.errors.length ? result.errors.slice(0, 5) : 'none',
  });
  console.log(`\nwrote ${file}`);
  if (result.check.lost || result.check.doubled) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
