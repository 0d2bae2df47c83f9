/**
 * `npm run chaos -- [--runs N] [--seed S] [--cluster] [--seconds 30] [--faults 3] [--users 3] [--json FILE]
 *   [--roll [--workers N] [--drain-ms MS]]`
 *
 * Mixed traffic over TCP, WebSocket and long-poll SDK clients while faults strike (kill -9 of the node; with
 * `--cluster`, of one of three nodes, or a crash of PostgreSQL, or of Redis; with `--roll`, planned restarts
 * instead: the node's `--workers` gateway processes (default 2) rolled by SIGHUP, or with `--cluster` every node
 * drained by SIGTERM and started again in turn, docs/operations.md "Draining and rolling restarts"), then checks that every answered send
 * is in every log exactly once, every device converged, and the storage is sound (see run.ts). Each run prints its
 * seed; `--seed S --runs 1` replays a run's plan. Exits 1 when any run found a problem or could not be run.
 * `--json FILE` writes the record (machine, command, date, every run). Ctrl-C tears the run's processes down.
 */
import { randomInt } from 'node:crypto';
import { parseArgs } from '../lib/proc.ts';
import { machine, writeResult } from '../lib/result.ts';
import { runChaos, type ChaosResult } from './run.ts';

const args = parseArgs(process.argv.slice(2), { runs: '1', seconds: '30', faults: '3', users: '3', cluster: 'false', roll: 'false' });
const rolling = {
  ...(args.roll === 'true' ? { roll: true } : {}),
  ...(args.workers !== undefined ? { workers: Number(args.workers) } : {}),
  ...(args['drain-ms'] !== undefined ? { drainMs: Number(args['drain-ms']) } : {}),
};
const mode = args.cluster === 'true' ? 'cluster' : 'single';
const runs = Number(args.runs);
const firstSeed = args.seed !== undefined ? Number(args.seed) : randomInt(1, 2 ** 31);
const results: ChaosResult[] = [];
const harnessErrors: { seed: number; error: string }[] = [];
const interrupted = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => interrupted.abort());
console.log(`chaos: ${runs} run(s), ${mode}, ${args.seconds} s of traffic and ${args.faults} faults each, ${Number(args.users) * 3} users; machine ${JSON.stringify(machine())}`);
for (let i = 0; i < runs; i++) {
  const seed = (firstSeed + i) >>> 0;
  console.log(`\nrun ${i + 1}/${runs} seed ${seed}`);
  let r: ChaosResult;
  try {
    r = await runChaos({ seed, mode, seconds: Number(args.seconds), faults: Number(args.faults), usersPerTransport: Number(args.users), signal: interrupted.signal, ...rolling });
  } catch (err) {
    // The harness itself failed (a process that did not start within its deadline on a loaded machine): not a
    // verdict on the server; recorded apart and the next run goes on.
    harnessErrors.push({ seed, error: String((err as Error)?.stack ?? err) });
    console.log(`  harness error (no verdict): ${String(err)}`);
    continue;
  }
  results.push(r);
  console.log(
    `  ${r.ok ? 'OK' : 'FAILED'} in ${(r.durationMs / 1000).toFixed(1)} s: ${r.sends.total} sends (${r.sends.answered} answered, ${r.sends.resent} after a resend, ${r.sends.answeredDuplicate} "duplicate", ${r.sends.refused} refused, ${r.sends.unanswered} unanswered), ` +
      `faults ${r.faults.map((f) => `${f.kind}${f.node !== undefined ? '#' + f.node : ''}@${(f.atMs / 1000).toFixed(1)}s/${f.downMs}ms`).join(' ')}, ${r.selfExits} self-exits; ` +
      `lost ${r.lost}, doubled ${r.doubled}, diverged ${r.diverged}, integrity ${r.integrity}, density problems ${r.densityProblems}; ${r.devices} devices, ${r.logEntries} log entries`,
  );
  for (const p of r.problems.slice(0, 20)) console.log(`    ${p}`);
}
const failed = results.filter((r) => !r.ok);
const sum = (f: (r: ChaosResult) => number) => results.reduce((n, r) => n + f(r), 0);
const totals = {
  runs: results.length,
  harnessErrors: harnessErrors.length,
  failedRuns: failed.length,
  sends: sum((r) => r.sends.total),
  answered: sum((r) => r.sends.answered),
  resent: sum((r) => r.sends.resent),
  faults: sum((r) => r.faults.length),
  lost: sum((r) => r.lost),
  doubled: sum((r) => r.doubled),
  diverged: sum((r) => r.diverged),
  integrityNotOk: results.filter((r) => r.integrity !== 'ok' && r.integrity !== 'n/a').length,
  densityProblems: sum((r) => r.densityProblems),
};
console.log(`\ntotals ${JSON.stringify(totals)}${failed.length ? `; failed seeds: ${failed.map((r) => r.seed).join(', ')}` : ''}`);
writeResult(args.json, `chaos-${mode}`, args, { command: `npm run chaos -- ${process.argv.slice(2).join(' ')}`, seeds: results.map((r) => r.seed), totals, runs: results, harnessErrors });
process.exit(failed.length || harnessErrors.length ? 1 : 0);
