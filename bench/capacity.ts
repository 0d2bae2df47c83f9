/**
 * `npm run capacity -- --users 1000000 --online 0.3 --devices 1.6 --msgs-per-user-day 60 --peak 4 --group-share 0.5`
 * Fits per-connection memory, per-send/append/delivery CPU and the single writer's append rate from the bench
 * records (bench/results/*.json, Synchat runs over `--transport`), then prints what the workload needs — cores,
 * memory, nodes, storage and bus load, bandwidth — with its arithmetic and which resource binds first.
 * The model is in bench/lib/capacity-model.ts; docs/capacity.md explains it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fitCpu, plan, type CostSample, type Costs } from './lib/capacity-model.ts';
import { parseArgs } from './lib/proc.ts';

const DEFAULTS = {
  users: '1000000',
  online: '0.3',
  devices: '1.6',
  'msgs-per-user-day': '60',
  peak: '4',
  'group-share': '0.5',
  'group-size': '50',
  'heartbeat-sec': '30',
  'node-cores': '2',
  'node-mem-gib': '24',
  utilisation: '0.7',
  transport: 'tcp',
  results: 'bench/results',
  json: 'false',
};

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};

/** Reads the records and fits the costs (exported for the report and tests). */
export function fitCosts(dir: string, transport: string): Costs {
  const records = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => ({ file: f, ...JSON.parse(readFileSync(join(dir, f), 'utf8')) }));
  const runs = (scenario: string) => records.filter((r) => r.scenario === scenario).flatMap((r) => (r.runs ?? []).filter((x: any) => x.target === 'synchat' && x.transport === transport).map((x: any) => ({ ...x, file: r.file })));
  const sources: Record<string, string> = {};
  const idle = runs('idle');
  if (!idle.length) throw new Error(`no Synchat idle run over ${transport} in ${dir}: run \`npm run bench -- idle --transport ${transport} --json ${dir}/idle-${transport}.json\``);
  const bytesPerConn = median(idle.map((r) => r.serverBytesPerConn));
  sources.bytesPerConn = `median of idle runs: ${idle.map((r) => `${r.file} (${r.connections} conns: ${r.serverBytesPerConn} B)`).join(', ')}`;
  const kernel = idle.map((r) => r.kernelBytesPerSocket).filter((k: unknown) => typeof k === 'number' && k > 0);
  const kernelBytesPerSocket = kernel.length ? median(kernel) : 5120;
  sources.kernelBytesPerSocket = kernel.length ? `median slab growth per socket in idle runs` : 'assumed 5 KiB (slab growth not measurable in these runs)';
  const baseBytes = Math.min(...idle.map((r) => r.serverRssBeforeMiB)) * 2 ** 20;
  sources.baseBytes = 'smallest server RSS before connecting, idle runs';

  const samples: CostSample[] = [];
  let maxAppends = 0;
  for (const r of runs('direct'))
    for (const s of [...r.steps, ...(r.atHalf ? [r.atHalf] : [])]) {
      if (s.ackedPerSec < 0.9 * s.offeredPerSec || s.serverCores <= 0) continue;
      // 1 recipient + the sending device's own copy per message.
      samples.push({ cores: s.serverCores, msgsPerSec: s.ackedPerSec, appendsPerSec: 2 * s.ackedPerSec, deliveriesPerSec: s.deliveredPerSec + s.ackedPerSec });
      if (s.passed) maxAppends = Math.max(maxAppends, 2 * s.ackedPerSec);
    }
  for (const r of runs('group'))
    for (const s of [...r.steps, ...(r.atHalf ? [r.atHalf] : [])]) {
      if (s.ackedPerSec < 0.9 * s.offeredPerSec || s.serverCores <= 0) continue;
      samples.push({ cores: s.serverCores, msgsPerSec: s.ackedPerSec, appendsPerSec: r.groupSize * s.ackedPerSec, deliveriesPerSec: s.deliveredPerSec + s.ackedPerSec });
      if (s.passed) maxAppends = Math.max(maxAppends, r.groupSize * s.ackedPerSec);
    }
  for (const r of runs('catchup')) maxAppends = Math.max(maxAppends, 2 * r.writePerSec);
  if (samples.length < 3) throw new Error(`need direct and group runs over ${transport} in ${dir} to fit CPU costs (found ${samples.length} usable steps)`);
  const cpu = fitCpu(samples);
  sources.cpu = `non-negative least squares over ${samples.length} load steps of direct and group runs (server cores = msgs/s·a + appends/s·b + deliveries/s·c)`;
  const catchup = runs('catchup');
  // A PUSH of one entry adds its 16-byte header and {"entries":[…],"syncKey":N} (≈ 30 B) to the entry's bytes.
  const bytesPerDelivery = catchup.length ? median(catchup.map((r) => r.bytesPerEntry)) + 46 : 300;
  sources.bytesPerDelivery = catchup.length ? 'catch-up bytes per entry + 46 B of PUSH framing' : 'assumed 300 B';
  sources.maxAppendsPerSecPerWriter = 'highest append rate sustained in any direct/group step or catch-up write (a lower bound of the writer)';
  return { bytesPerConn, kernelBytesPerSocket, baseBytes, ...cpu, bytesPerDelivery, maxAppendsPerSecPerWriter: maxAppends, sources };
}

function human(n: number, unit: string): string {
  if (unit === 'bytes') return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (unit === 'bit/s') return n >= 1e9 ? `${(n / 1e9).toFixed(2)} Gbit/s` : `${(n / 1e6).toFixed(2)} Mbit/s`;
  return `${n.toLocaleString('en-US', { maximumFractionDigits: n < 10 ? 3 : 0 })} ${unit}`;
}

function main(): void {
  const o = parseArgs(process.argv.slice(2), DEFAULTS);
  const costs = fitCosts(o.results!, o.transport!);
  const workload = {
    users: Number(o.users),
    online: Number(o.online),
    devices: Number(o.devices),
    msgsPerUserDay: Number(o['msgs-per-user-day']),
    peak: Number(o.peak),
    groupShare: Number(o['group-share']),
    groupSize: Number(o['group-size']),
    heartbeatSec: Number(o['heartbeat-sec']),
  };
  const node = { cores: Number(o['node-cores']), memBytes: Number(o['node-mem-gib']) * 2 ** 30, utilisation: Number(o.utilisation) };
  const p = plan(workload, costs, node);
  if (o.json === 'true') {
    console.log(JSON.stringify({ workload, node, costs, plan: p }, null, 2));
    return;
  }
  console.log(`Costs fitted from ${o.results} (Synchat over ${o.transport}, this machine):`);
  console.log(`  memory per connection   ${Math.round(costs.bytesPerConn)} B process + ${Math.round(costs.kernelBytesPerSocket)} B kernel   (${costs.sources.bytesPerConn}; kernel: ${costs.sources.kernelBytesPerSocket})`);
  console.log(`  base server memory      ${human(costs.baseBytes, 'bytes')}`);
  console.log(`  CPU per send            ${costs.cpuPerSend.toExponential(2)} core·s`);
  console.log(`  CPU per append          ${costs.cpuPerAppend.toExponential(2)} core·s`);
  console.log(`  CPU per delivery        ${costs.cpuPerDelivery.toExponential(2)} core·s   (${costs.sources.cpu})`);
  console.log(`  bytes per delivery      ${Math.round(costs.bytesPerDelivery)} B (${costs.sources.bytesPerDelivery})`);
  console.log(`  single writer appends/s ≥ ${Math.round(costs.maxAppendsPerSecPerWriter)} (${costs.sources.maxAppendsPerSecPerWriter})`);
  console.log(`\nWorkload: ${JSON.stringify(workload)}; node: ${node.cores} cores, ${o['node-mem-gib']} GiB, planned to ${node.utilisation * 100}%\n`);
  const width = Math.max(...p.steps.map((s) => s.what.length));
  for (const s of p.steps) console.log(`  ${s.what.padEnd(width)}  ${human(s.value, s.unit).padStart(16)}   = ${s.formula}`);
  console.log(`\nAnswer: ${p.nodes} node(s) of ${node.cores} cores / ${o['node-mem-gib']} GiB — ${human(p.cores, 'cores')}, ${human(p.memBytes, 'bytes')} memory, ${human(p.bandwidthBitsPerSec, 'bit/s')} out.`);
  const l = p.loads;
  const what = { cpu: 'CPU', memory: 'memory', writer: 'the single SQLite writer (appends/s)' }[p.binding];
  console.log(`Binds first: ${what} — loads: CPU ${l.cpu.toFixed(3)} node(s), memory ${l.memory.toFixed(3)} node(s), writer ${l.writer.toFixed(3)} of one writer.`);
  console.log(
    p.isSingleWriterEnough
      ? `Storage: one SQLite writer takes ${human(p.appendsPerSec, 'appends/s')} (measured ≥ ${Math.round(costs.maxAppendsPerSecPerWriter)}/s); no PostgreSQL/Redis needed${p.nodes > 1 ? ' for writes, but several nodes share one store and bus: PostgreSQL + Redis' : ''}.`
      : `Storage: ${human(p.storageWritesPerSec, 'rows/s')} exceed one SQLite writer (measured ≥ ${Math.round(costs.maxAppendsPerSecPerWriter)} appends/s): PostgreSQL (${human(p.storageWritesPerSec, 'rows/s')} inserted) and Redis (${human(p.busPublishesPerSec, 'publishes/s')}), docs/scaling.md.`,
  );
}

main();
