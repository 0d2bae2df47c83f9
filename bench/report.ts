/**
 * `npm run bench:report`: turns the recorded runs (bench/results/*.json, or the files/folders given) into
 * docs/bench/index.html — charts of latency against offered load and memory against connections, drawn by
 * Chart.js inlined into the page so it works offline — and docs/bench/table.md, the Markdown table that
 * BENCHMARKS.md quotes (also printed).
 *
 *   npm run bench:report [-- results-dir-or-files…]
 */
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

interface Record_ {
  file: string;
  scenario: string;
  date: string;
  command: string;
  machine: Record<string, unknown>;
  runs: any[];
}

function load(paths: string[]): Record_[] {
  const files: string[] = [];
  for (const p of paths) {
    // A folder's own .json files (not its subfolders: bench/results/2026-11-26 keeps the records of older code).
    if (statSync(p).isDirectory()) {
      for (const f of readdirSync(p).sort()) if (f.endsWith('.json')) files.push(join(p, f));
    } else files.push(p);
  }
  return files.map((file) => ({ file, ...JSON.parse(readFileSync(file, 'utf8')) })).filter((r) => Array.isArray(r.runs));
}

const fmt = (n: unknown) => (typeof n === 'number' ? n.toLocaleString('en-US', { maximumFractionDigits: 2 }) : String(n ?? '—'));

/** One Markdown row per run: the headline figures of its scenario. */
export function tableRows(records: Record_[]): string[][] {
  const rows: string[][] = [];
  for (const r of records) {
    for (const run of r.runs) {
      const who = `${run.target} · ${run.transport}`;
      const date = r.date.slice(0, 10);
      const lostDup = (l: unknown, d: unknown) => `${fmt(l)} / ${fmt(d)}`;
      switch (r.scenario) {
        case 'idle':
          rows.push([r.scenario, who, `${fmt(run.connections)} connections; ${fmt(run.authsPerSec)} connect+AUTH/s; server ${fmt(run.serverKiBPerConn)} KiB/conn; kernel ${run.kernelBytesPerSocket === null ? '—' : fmt(run.kernelBytesPerSocket / 1024)} KiB/socket`, lostDup('—', '—'), `${r.file}`, date]);
          break;
        case 'direct':
          rows.push([r.scenario, who, `max ${fmt(run.maxSustainablePerSec)} msgs/s at p99 ≤ ${r.runs[0] ? '200' : ''} ms; p99 ${fmt(run.p99AtHalfMs)} ms at half (${fmt(run.atHalf?.offeredPerSec)}/s)`, lostDup(run.lostTotal, run.duplicatesTotal), r.file, date]);
          break;
        case 'group':
          rows.push([r.scenario, who, `${run.groupSize} members: max ${fmt(run.maxSustainableDeliveriesPerSec)} deliveries/s (${fmt(run.maxSustainableMsgsPerSec)} msgs/s), p99 ${fmt(run.p99AtMaxMs)} ms`, lostDup(run.lostTotal, run.duplicatesTotal), r.file, date]);
          break;
        case 'storm':
          rows.push([r.scenario, who, `${fmt(run.clients)} clients current again in ${fmt(run.allCurrentSeconds)} s (${fmt(run.reconnectsPerSec)}/s); peak server ${fmt(run.serverPeakRssMiB)} MiB`, lostDup('—', '—'), r.file, date]);
          break;
        case 'catchup':
          rows.push([r.scenario, who, `${fmt(run.entries)} entries resynced in ${fmt(run.resyncSeconds)} s (${fmt(run.entriesPerSec)}/s), ${fmt(run.bytesPerEntry)} B/entry`, lostDup(run.entries - run.messagesReceived, run.duplicates), r.file, date]);
          break;
        case 'mixed':
          rows.push([r.scenario, who, `${fmt(run.users)} users, ${fmt(run.onlineDevices)} online devices, ${fmt(run.msgsPerSec)} msgs/s → ${fmt(run.step.deliveredPerSec)} deliveries/s, p99 ${fmt(run.step.latency.p99Ms)} ms`, lostDup(run.step.lost, run.step.duplicates), r.file, date]);
          break;
        default:
          break;
      }
    }
  }
  return rows;
}

/** The Markdown table. */
export function markdownTable(records: Record_[]): string {
  const head = ['scenario', 'target · transport', 'result', 'lost / dup', 'record', 'date'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const row of tableRows(records)) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n') + '\n';
}

function charts(records: Record_[]): unknown[] {
  const out: unknown[] = [];
  const latency: any[] = [];
  for (const r of records)
    for (const run of r.runs) {
      if (!Array.isArray(run.steps)) continue;
      const label = `${r.scenario}${run.groupSize ? ' ' + run.groupSize : ''} · ${run.target} · ${run.transport}`;
      const x = (s: any) => (r.scenario === 'group' ? s.deliveredPerSec : s.offeredPerSec);
      latency.push({ label: `${label} p99`, data: run.steps.map((s: any) => ({ x: x(s), y: s.latency.p99Ms })), showLine: true });
      latency.push({ label: `${label} p50`, data: run.steps.map((s: any) => ({ x: x(s), y: s.latency.p50Ms })), showLine: true, borderDash: [4, 4] });
    }
  out.push({ id: 'latency', title: 'Delivery latency (ms, log) against offered load (direct: msgs/s; group: deliveries/s)', type: 'scatter', datasets: latency, xTitle: 'offered load per second', yTitle: 'ms', yLog: true });
  const memory: any[] = [];
  for (const r of records)
    for (const run of r.runs)
      if (r.scenario === 'idle') memory.push({ label: `${run.target} · ${run.transport}`, data: [{ x: 0, y: run.serverRssBeforeMiB }, { x: run.connections, y: run.serverRssAfterMiB }], showLine: true });
  out.push({ id: 'memory', title: 'Server RSS (MiB, all processes) against connections (idle)', type: 'scatter', datasets: memory, xTitle: 'connections', yTitle: 'MiB' });
  const cpu: any[] = [];
  for (const r of records)
    for (const run of r.runs)
      if (run.usage?.server?.samples?.length) cpu.push({ label: `${r.scenario}${run.groupSize ? ' ' + run.groupSize : ''} · ${run.target} · ${run.transport}`, data: run.usage.server.samples.map((s: any) => ({ x: s.t, y: s.cpuCores })), showLine: true, pointRadius: 0 });
  out.push({ id: 'cpu', title: 'Server CPU (cores) over each run', type: 'scatter', datasets: cpu, xTitle: 'seconds', yTitle: 'cores' });
  return out;
}

function html(records: Record_[], table: string): string {
  const require = createRequire(import.meta.url);
  // The UMD build is not in chart.js's exports map: find it beside the resolved entry point.
  const chartJs = readFileSync(join(dirname(require.resolve('chart.js')), 'chart.umd.min.js'), 'utf8');
  const specs = charts(records);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const rows = tableRows(records)
    .map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`)
    .join('\n');
  const machines = [...new Set(records.map((r) => JSON.stringify({ cpus: r.machine.cpus, memGiB: r.machine.memGiB, node: r.machine.node })))].join(' ');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Synchat benchmarks</title>
<style>body{font:14px system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top}.chart{height:420px;margin:2em 0}</style>
<script>${chartJs.replace(/<\/script/gi, '<\\/script')}</script></head>
<body><h1>Synchat benchmarks</h1>
<p>Generated by <code>npm run bench:report</code> from ${records.length} recorded runs. Machine: ${esc(machines)}. Each run's JSON holds its command, date and every figure; see BENCHMARKS.md for the discussion.</p>
<table><tr><th>scenario</th><th>target · transport</th><th>result</th><th>lost / dup</th><th>record</th><th>date</th></tr>
${rows}</table>
${specs.map((s: any) => `<h2>${esc(s.title)}</h2><div class="chart"><canvas id="${s.id}"></canvas></div>`).join('\n')}
<script>
const specs = ${JSON.stringify(specs)};
for (const s of specs) {
  new Chart(document.getElementById(s.id), {
    type: s.type,
    data: { datasets: s.datasets },
    options: { maintainAspectRatio: false, animation: false, scales: { x: { type: 'linear', title: { display: true, text: s.xTitle } }, y: { type: s.yLog ? 'logarithmic' : 'linear', title: { display: true, text: s.yTitle } } } },
  });
}
</script>
<!-- markdown table, as in BENCHMARKS.md:
${esc(table)}-->
</body></html>
`;
}

function main(): void {
  const args = process.argv.slice(2);
  const records = load(args.length ? args : ['bench/results']);
  const table = markdownTable(records);
  mkdirSync('docs/bench', { recursive: true });
  writeFileSync('docs/bench/index.html', html(records, table));
  writeFileSync('docs/bench/table.md', table);
  console.log(table);
  console.log(`wrote docs/bench/index.html and docs/bench/table.md from ${records.length} runs`);
}

main();
