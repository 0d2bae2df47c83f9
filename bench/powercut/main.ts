/**
 * `npm run powercut -- [--runs N] [--off N] [--latest-ms 400] [--json FILE]`
 *
 * Simulated power cuts (test/helpers/power-cut.ts: a disk that keeps only what was fsynced, kill -9 at a random
 * moment of a burst of sends, the data folder rebuilt from the synced bytes, a normal server started on it): N
 * runs with the default durability, each of which must keep every answered send exactly once with a clean
 * `PRAGMA integrity_check`, then `--off` runs with SYNCHAT_SQLITE_SYNCHRONOUS=OFF, which show what the same
 * simulation loses when nothing is synced. Exits 1 when a default run lost, doubled or damaged anything.
 * `--json FILE` writes the record (machine, command, date, every run).
 */
import { randomInt } from 'node:crypto';
import { parseArgs } from '../lib/proc.ts';
import { machine, writeResult } from '../lib/result.ts';
import { cleanDataFolder, cutPower, type PowerCut } from '../../test/helpers/power-cut.ts';

const args = parseArgs(process.argv.slice(2), { runs: '20', off: '5', 'latest-ms': '400' });
const plan = [...Array<'FULL'>(Number(args.runs)).fill('FULL'), ...Array<'OFF'>(Number(args.off)).fill('OFF')];
console.log(`powercut: ${args.runs} cut(s) with the default durability, ${args.off} with synchronous=OFF; machine ${JSON.stringify(machine())}`);
const base = await cleanDataFolder();
const runs: PowerCut[] = [];
try {
  for (const [i, synchronous] of plan.entries()) {
    const r = await cutPower(base.dir, synchronous, randomInt(0, Number(args['latest-ms']) + 1));
    runs.push(r);
    console.log(
      `run ${i + 1}/${plan.length} ${synchronous}: cut ${r.cutAfterMs} ms after the first answer, ${r.answered}/${r.attempted} sends answered, ` +
        `lost ${r.lost.length} (of ${r.answered * 2} answered log entries), doubled ${r.doubled.length}, integrity ${r.integrity}; ` +
        `messages stored ${r.messages.afterKill9} after kill -9 alone, ${r.messages.afterPowerCut} after the power cut; ` +
        `${r.checkpoints.checkpoints} checkpoints, ${r.checkpoints.walRestarts} WAL restarts before the cut`,
    );
  }
} finally {
  base.remove();
}
const totals = (mode: PowerCut['synchronous']) => {
  const of = runs.filter((r) => r.synchronous === mode);
  return {
    runs: of.length,
    answered: of.reduce((n, r) => n + r.answered, 0),
    lostEntries: of.reduce((n, r) => n + r.lost.length, 0),
    runsLosing: of.filter((r) => r.lost.length > 0).length,
    doubled: of.reduce((n, r) => n + r.doubled.length, 0),
    integrityNotOk: of.filter((r) => r.integrity !== 'ok').length,
    /** Committed messages that a kill -9 alone would have kept and the power cut took (none answered, with FULL). */
    takenByPowerCut: of.reduce((n, r) => n + r.messages.afterKill9 - r.messages.afterPowerCut, 0),
    runsWherePowerCutTookMore: of.filter((r) => r.messages.afterPowerCut < r.messages.afterKill9).length,
    checkpoints: of.reduce((n, r) => n + r.checkpoints.checkpoints, 0),
    walRestarts: of.reduce((n, r) => n + r.checkpoints.walRestarts, 0),
  };
};
const summary = { FULL: totals('FULL'), OFF: totals('OFF') };
console.log(`totals ${JSON.stringify(summary)}`);
const runsOut = runs.map((r) => ({ ...r, lost: r.lost.length, lostFirst: r.lost.slice(0, 5) }));
writeResult(args.json, 'powercut', args, { command: `npm run powercut -- ${process.argv.slice(2).join(' ')}`, totals: summary, runs: runsOut });
const full = summary.FULL;
process.exit(full.lostEntries || full.doubled || full.integrityNotOk ? 1 : 0);
