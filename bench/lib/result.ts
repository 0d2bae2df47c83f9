/**
 * The JSON record of a run (`--json FILE`) and the human summary: every figure, with the command, the machine,
 * the date and the code (commit), so BENCHMARKS.md and the report can cite it.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, release } from 'node:os';
import { dirname } from 'node:path';

/** The machine a run was made on, and its 1-minute load average (other work sharing the cores makes noise). */
export function machine(): Record<string, string | number> {
  return { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', memGiB: Math.round(totalmem() / 2 ** 30), node: process.version, kernel: release(), loadAvg1m: +loadavg()[0]!.toFixed(2) };
}

/**
 * The code a run measures, read when the bench starts (servers run the working tree through tsx, and others may
 * commit meanwhile): the commit, and the files under src/ that differ from it. Empty fields outside a git checkout.
 */
const CODE: { commit: string; uncommittedSrc: string[] } = (() => {
  const git = (...args: string[]) => execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    return { commit: git('rev-parse', 'HEAD'), uncommittedSrc: git('status', '--porcelain', '--', 'src').split('\n').filter(Boolean) };
  } catch {
    return { commit: '', uncommittedSrc: [] };
  }
})();

/** Writes the run's record when `--json FILE` was given. */
export function writeResult(file: string | undefined, scenario: string, options: Record<string, string>, result: Record<string, unknown>): void {
  const record = {
    scenario,
    date: new Date().toISOString(),
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`,
    machine: machine(),
    code: CODE,
    options,
    ...result,
  };
  if (file) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
    console.log(`\nwrote ${file}`);
  }
}

/** Prints a titled block of `label: value` lines. */
export function printBlock(title: string, rows: Record<string, unknown>): void {
  console.log(`\n== ${title}`);
  const width = Math.max(...Object.keys(rows).map((k) => k.length));
  for (const [k, v] of Object.entries(rows)) console.log(`  ${k.padEnd(width)}  ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
}

/** "client was the bottleneck" when the load tool's processes used most of their share of the cores. */
export function bottleneckNote(clientCores: number, serverCores: number, cores = cpus().length): string {
  const total = clientCores + serverCores;
  if (total < cores * 0.85) return `machine not saturated (client ${clientCores.toFixed(2)} + server ${serverCores.toFixed(2)} of ${cores} cores)`;
  return clientCores > serverCores
    ? `client-bound: the load tool used ${clientCores.toFixed(2)} cores vs the server's ${serverCores.toFixed(2)} (of ${cores}); the server's figure is a lower bound`
    : `server-bound: server ${serverCores.toFixed(2)} cores, client ${clientCores.toFixed(2)} (of ${cores})`;
}
