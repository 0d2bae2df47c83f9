/**
 * `npm run capacity -- --users 1000000 --online 0.3 --devices 1.6 --msgs-per-user-day 60 --peak 4 --group-share 0.5`
 * Fits per-connection memory, per-send/append/delivery CPU and the single writer's append rate from the bench
 * records (bench/results/*.json, Synchat runs over `--transport`), and from the runs on PostgreSQL and of several
 * nodes the node, PostgreSQL and Redis CPU costs; then prints what the workload needs — cores, memory, nodes,
 * storage and bus load, bandwidth, and past one SQLite node the PostgreSQL primaries (`--pg-cores` each) and
 * Redis instances — with its arithmetic and which resource binds first.
 * The model is in bench/lib/capacity-model.ts; docs/capacity.md explains it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_DB_SHAPE, fitCpu, heartbeatsPerConnSec, nnls, plan, type ClusterCosts, type Costs, type HeartbeatShare } from './lib/capacity-model.ts';
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
  'heartbeat-share': '',
  'node-cores': '2',
  'node-mem-gib': '24',
  utilisation: '0.7',
  'pg-cores': String(DEFAULT_DB_SHAPE.pgCores),
  'cluster-workers': '2',
  transport: 'tcp',
  results: 'bench/results',
  json: 'false',
};

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};

/** Which deployment a record measured: one node on SQLite (records before issue 10 say nothing: SQLite), one on PostgreSQL, or several nodes. */
type Deployment = 'sqlite' | 'postgres' | 'cluster';

function deploymentOf(run: { targetSettings?: Record<string, unknown> }): Deployment {
  const s = run.targetSettings ?? {};
  if (Number(s.nodes ?? 1) > 1) return 'cluster';
  return s.store === 'postgres' ? 'postgres' : 'sqlite';
}

/** A usable load step with its rates: acknowledged ≥ 90% of offered, server CPU sampled. */
interface FitStep {
  file: string;
  deployment: Deployment;
  /** Gateway processes per node (`SYNCHAT_WORKERS`) of the run. */
  workers: number;
  passed: boolean;
  msgsPerSec: number;
  appendsPerSec: number;
  deliveriesPerSec: number;
  serverCores: number;
  /** PostgreSQL's cores less other databases' backends; Redis's cores (absent in records before issue 10). */
  pgCores?: number;
  redisCores?: number;
  walBytesPerMsg?: number;
}

/**
 * Reads the records and fits the costs (exported for the report and tests); the several-node node CPU comes from
 * the runs whose nodes had `clusterWorkers` gateway processes each.
 */
export function fitCosts(dir: string, transport: string, clusterWorkers = 2): Costs {
  const records = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => ({ file: f, ...JSON.parse(readFileSync(join(dir, f), 'utf8')) }));
  const runs = (scenario: string, deployment?: Deployment) =>
    records
      .filter((r) => r.scenario === scenario)
      .flatMap((r) => (r.runs ?? []).filter((x: any) => x.target === 'synchat' && x.transport === transport && (!deployment || deploymentOf(x) === deployment)).map((x: any) => ({ ...x, file: r.file })));
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

  // Every usable step of the direct and group runs (warm-up steps left out): a direct message lands in 2 logs and is delivered to its 1
  // recipient and echoed to the sending device; a group message lands in every member's log.
  const steps: FitStep[] = [];
  const collect = (scenario: string, appendsPerMsg: (r: any) => number) => {
    for (const r of runs(scenario))
      for (const x of [...r.steps, ...(r.atHalf ? [r.atHalf] : [])]) {
        if (x.phase === 'warmup' || x.ackedPerSec < 0.9 * x.offeredPerSec || x.serverCores <= 0) continue;
        const parts = x.parts ?? {};
        steps.push({
          file: r.file,
          deployment: deploymentOf(r),
          workers: Number(r.targetSettings?.workers ?? 2),
          passed: x.passed,
          msgsPerSec: x.ackedPerSec,
          appendsPerSec: appendsPerMsg(r) * x.ackedPerSec,
          deliveriesPerSec: x.deliveredPerSec + x.ackedPerSec,
          serverCores: x.serverCores,
          ...(parts.postgres ? { pgCores: Math.max(0, parts.postgres.cores - (parts.postgresOtherDbs?.cores ?? 0)) } : {}),
          ...(parts.redis ? { redisCores: parts.redis.cores } : {}),
          ...(x.postgres ? { walBytesPerMsg: x.postgres.walBytesPerMsg } : {}),
        });
      }
  };
  collect('direct', () => 2);
  collect('group', (r) => r.groupSize);
  const nodeSamples = (d: Deployment) => steps.filter((x) => x.deployment === d).map((x) => ({ ...x, cores: x.serverCores }));
  const sqlite = nodeSamples('sqlite');
  let maxAppends = Math.max(0, ...sqlite.filter((x) => x.passed).map((x) => x.appendsPerSec));
  for (const r of runs('catchup')) maxAppends = Math.max(maxAppends, 2 * r.writePerSec);
  if (sqlite.length < 3) throw new Error(`need direct and group runs over ${transport} on one SQLite node in ${dir} to fit CPU costs (found ${sqlite.length} usable steps)`);
  const cpu = fitCpu(sqlite);
  sources.cpu = `non-negative least squares over ${sqlite.length} load steps of direct and group runs on one SQLite node (server cores = msgs/s·a + appends/s·b + deliveries/s·c)`;
  const catchup = runs('catchup');
  // A PUSH of one entry adds its 16-byte header and {"entries":[…],"syncKey":N} (≈ 30 B) to the entry's bytes.
  const bytesPerDelivery = catchup.length ? median(catchup.map((r) => r.bytesPerEntry)) + 46 : 300;
  sources.bytesPerDelivery = catchup.length ? 'catch-up bytes per entry + 46 B of PUSH framing' : 'assumed 300 B';
  sources.maxAppendsPerSecPerWriter = 'highest append rate sustained in any direct/group step on one SQLite node or catch-up write (a lower bound of the writer)';
  // bench/probes/heartbeat-cost.ts: server CPU per heartbeat answered (the latest record, if any).
  const hb = records.filter((r) => r.scenario === 'heartbeat-cost' && r.usPerHeartbeatMedian > 0).sort((a, b) => String(b.date).localeCompare(String(a.date)))[0];
  const cpuPerHeartbeat = hb ? hb.usPerHeartbeatMedian * 1e-6 : undefined;
  sources.cpuPerHeartbeat = hb ? `${hb.file}: median over ${hb.rounds.length} rounds of ${hb.connections} connections heartbeating every ${hb.periodMs ?? 1000} ms` : 'no heartbeat-cost record: heartbeats cost no CPU in the plan';
  const cluster = fitCluster(steps, sources, clusterWorkers);
  return {
    bytesPerConn,
    kernelBytesPerSocket,
    baseBytes,
    ...cpu,
    bytesPerDelivery,
    ...(cpuPerHeartbeat ? { cpuPerHeartbeat } : {}),
    maxAppendsPerSecPerWriter: maxAppends,
    ...(cluster ? { cluster } : {}),
    sources,
  };
}

/**
 * The several-node costs, when runs of several nodes were recorded: node CPU from those of them with `workers`
 * gateways a node (as for one node), PostgreSQL's CPU (its processes less other databases' backends) as
 * msgs/s·p + appends/s·q over every step on PostgreSQL (one node and several), Redis's as msgs/s·r + appends/s·s
 * over every several-node step, WAL per append.
 */
function fitCluster(steps: readonly FitStep[], sources: Record<string, string>, workers: number): ClusterCosts | undefined {
  const several = steps.filter((x) => x.deployment === 'cluster' && x.workers === workers);
  const allSeveral = steps.filter((x) => x.deployment === 'cluster');
  const onPg = steps.filter((x) => x.deployment !== 'sqlite' && x.pgCores !== undefined);
  if (several.length < 3 || onPg.length < 2) return undefined;
  const files = (xs: readonly FitStep[]) => [...new Set(xs.map((x) => x.file))].join(', ');
  const nodeCpu = fitCpu(several.map((x) => ({ ...x, cores: x.serverCores })));
  sources.clusterCpu = `non-negative least squares over ${several.length} steps of several nodes with ${workers} gateways each (${files(several)}): all nodes' cores = msgs/s·a + appends/s·b + deliveries/s·c`;
  const [pgCpuPerMsg, pgCpuPerAppend] = nnls(onPg.map((x) => [x.msgsPerSec, x.appendsPerSec]), onPg.map((x) => x.pgCores!));
  sources.pgCpu = `non-negative least squares over ${onPg.length} steps on PostgreSQL (${files(onPg)}): PostgreSQL cores (every postgres process less other databases' backends) = msgs/s·p + appends/s·q`;
  const withRedis = allSeveral.filter((x) => x.redisCores !== undefined);
  const [redisCpuPerMsg, redisCpuPerAppend] = nnls(withRedis.map((x) => [x.msgsPerSec, x.appendsPerSec]), withRedis.map((x) => x.redisCores!));
  sources.redisCpu = `non-negative least squares over ${withRedis.length} steps of several nodes (${files(withRedis)}): redis-server cores = msgs/s·r + appends/s·s`;
  const withWal = onPg.filter((x) => x.walBytesPerMsg !== undefined);
  const [pgWalBytesPerMsg, pgWalBytesPerAppend] = nnls(withWal.map((x) => [x.msgsPerSec, x.appendsPerSec]), withWal.map((x) => x.walBytesPerMsg! * x.msgsPerSec));
  sources.pgWal = `non-negative least squares over ${withWal.length} steps on PostgreSQL: WAL bytes/s (the server's, at pg_current_wal_lsn) = msgs/s·w + appends/s·v`;
  const pgMaxAppendsPerSec = Math.max(0, ...onPg.filter((x) => x.passed).map((x) => x.appendsPerSec));
  sources.pgMaxAppends = 'highest append rate of a passing step on PostgreSQL (one node or several)';
  return { ...nodeCpu, pgCpuPerMsg: pgCpuPerMsg!, pgCpuPerAppend: pgCpuPerAppend!, pgWalBytesPerMsg: pgWalBytesPerMsg!, pgWalBytesPerAppend: pgWalBytesPerAppend!, pgMaxAppendsPerSec, redisCpuPerMsg: redisCpuPerMsg!, redisCpuPerAppend: redisCpuPerAppend! };
}

function human(n: number, unit: string): string {
  if (unit === 'bytes') return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (unit === 'bytes/s') return `${(n / 2 ** 20).toFixed(1)} MiB/s`;
  if (unit === 'bit/s') return n >= 1e9 ? `${(n / 1e9).toFixed(2)} Gbit/s` : `${(n / 1e6).toFixed(2)} Mbit/s`;
  return `${n.toLocaleString('en-US', { maximumFractionDigits: n < 10 ? 3 : 0 })} ${unit}`;
}

/**
 * `--heartbeat-sec 27,300 --heartbeat-share 0.6,0.4`: devices on several heartbeat periods (docs/capacity.md
 * "Heartbeat mix"); one period and no shares: all devices on it. Exits with a message on a malformed mix.
 */
function heartbeatMix(secText: string, shareText: string): HeartbeatShare[] | undefined {
  const secs = secText.split(',').map(Number);
  if (!shareText && secs.length === 1) return undefined;
  const shares = shareText ? shareText.split(',').map(Number) : [];
  const isBad = shares.length !== secs.length || secs.some((v) => !(v > 0)) || shares.some((v) => !(v >= 0 && v <= 1)) || Math.abs(shares.reduce((a, b) => a + b, 0) - 1) > 1e-6;
  if (isBad) {
    console.error(`--heartbeat-sec ${secText} --heartbeat-share ${shareText}: give one share (0–1, summing to 1) per period (> 0 s), e.g. --heartbeat-sec 27,300 --heartbeat-share 0.6,0.4`);
    process.exit(2);
  }
  return secs.map((sec, i) => ({ sec, share: shares[i]! }));
}

function main(): void {
  const o = parseArgs(process.argv.slice(2), DEFAULTS);
  const mix = heartbeatMix(o['heartbeat-sec']!, o['heartbeat-share']!);
  const costs = fitCosts(o.results!, o.transport!, Number(o['cluster-workers']));
  const workload = {
    users: Number(o.users),
    online: Number(o.online),
    devices: Number(o.devices),
    msgsPerUserDay: Number(o['msgs-per-user-day']),
    peak: Number(o.peak),
    groupShare: Number(o['group-share']),
    groupSize: Number(o['group-size']),
    heartbeatSec: mix ? 1 / heartbeatsPerConnSec({ heartbeatSec: 0, heartbeatMix: mix }).rate : Number(o['heartbeat-sec']),
    ...(mix ? { heartbeatMix: mix } : {}),
  };
  const node = { cores: Number(o['node-cores']), memBytes: Number(o['node-mem-gib']) * 2 ** 30, utilisation: Number(o.utilisation) };
  const db = { pgCores: Number(o['pg-cores']) };
  const p = plan(workload, costs, node, db);
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
  console.log(`  CPU per heartbeat       ${costs.cpuPerHeartbeat ? `${costs.cpuPerHeartbeat.toExponential(2)} core·s` : '—'}   (${costs.sources.cpuPerHeartbeat})`);
  console.log(`  single writer appends/s ≥ ${Math.round(costs.maxAppendsPerSecPerWriter)} (${costs.sources.maxAppendsPerSecPerWriter})`);
  const k = costs.cluster;
  if (k) {
    console.log('Several nodes on PostgreSQL + Redis:');
    console.log(`  node CPU per send / append / delivery  ${k.cpuPerSend.toExponential(2)} / ${k.cpuPerAppend.toExponential(2)} / ${k.cpuPerDelivery.toExponential(2)} core·s   (${costs.sources.clusterCpu})`);
    console.log(`  PostgreSQL CPU per msg / append        ${k.pgCpuPerMsg.toExponential(2)} / ${k.pgCpuPerAppend.toExponential(2)} core·s   (${costs.sources.pgCpu})`);
    console.log(`  PostgreSQL WAL per msg / append        ${Math.round(k.pgWalBytesPerMsg)} / ${Math.round(k.pgWalBytesPerAppend)} B   (${costs.sources.pgWal})`);
    console.log(`  PostgreSQL appends/s                   ≥ ${Math.round(k.pgMaxAppendsPerSec)}   (${costs.sources.pgMaxAppends})`);
    console.log(`  Redis CPU per msg / append             ${k.redisCpuPerMsg.toExponential(2)} / ${k.redisCpuPerAppend.toExponential(2)} core·s   (${costs.sources.redisCpu})`);
  } else console.log('Several nodes: no records of several nodes in this folder (npm run bench -- direct --nodes 3 …), so no PostgreSQL/Redis layout.');
  console.log(`\nWorkload: ${JSON.stringify(workload)}; node: ${node.cores} cores, ${o['node-mem-gib']} GiB; PostgreSQL server: ${db.pgCores} cores; everything planned to ${node.utilisation * 100}%\n`);
  const width = Math.max(...p.steps.map((s) => s.what.length));
  for (const s of p.steps) console.log(`  ${s.what.padEnd(width)}  ${human(s.value, s.unit).padStart(16)}   = ${s.formula}`);
  const l = p.loads;
  const what = { cpu: 'node CPU', memory: 'memory', writer: 'the single SQLite writer (appends/s)', postgres: 'PostgreSQL CPU', redis: 'Redis CPU' }[p.binding];
  const c = p.cluster;
  if (!c) {
    console.log(`\nAnswer: ${p.nodes} node(s) of ${node.cores} cores / ${o['node-mem-gib']} GiB — ${human(p.cores, 'cores')}, ${human(p.memBytes, 'bytes')} memory, ${human(p.bandwidthBitsPerSec, 'bit/s')} out.`);
    console.log(`Binds first: ${what} — loads: CPU ${l.cpu.toFixed(3)} node(s), memory ${l.memory.toFixed(3)} node(s), writer ${l.writer.toFixed(3)} of one writer.`);
    console.log(
      p.isSingleWriterEnough
        ? `Storage: one SQLite writer takes ${human(p.appendsPerSec, 'appends/s')} (measured ≥ ${Math.round(costs.maxAppendsPerSecPerWriter)}/s); no PostgreSQL/Redis needed${p.nodes > 1 ? ' for writes, but several nodes share one store and bus: PostgreSQL + Redis' : ''}.`
        : `Storage: ${human(p.storageWritesPerSec, 'rows/s')} exceed one SQLite writer (measured ≥ ${Math.round(costs.maxAppendsPerSecPerWriter)} appends/s): PostgreSQL (${human(p.storageWritesPerSec, 'rows/s')} inserted) and Redis (${human(p.busPublishesPerSec, 'publishes/s')}), docs/scaling.md.`,
    );
    return;
  }
  console.log(`\nAnswer: ${p.nodes} node(s) of ${node.cores} cores / ${o['node-mem-gib']} GiB (${human(p.cores, 'cores')}, ${human(p.memBytes, 'bytes')} memory, ${human(p.bandwidthBitsPerSec, 'bit/s')} out)`);
  console.log(
    `  + PostgreSQL: ${c.pgPrimaries} primar${c.pgPrimaries > 1 ? 'ies' : 'y'} of ${db.pgCores} cores${c.pgPrimaries > 1 ? ', users partitioned by uin' : ''}, each with a streaming standby (${human(c.pgBusyCores, 'cores')} busy, ${human(c.pgWalBytesPerSec, 'bytes/s')} of WAL)`,
  );
  console.log(`  + Redis: ${c.redisInstances} instance(s) of one core${c.redisInstances > 1 ? ", users' channels partitioned by uin" : ''} (${human(c.redisBusyCores, 'cores')} busy).`);
  console.log(`Binds first: ${what} — loads: node CPU ${l.cpu.toFixed(3)} node(s), memory ${l.memory.toFixed(3)} node(s), PostgreSQL ${l.postgres!.toFixed(3)} server(s), Redis ${l.redis!.toFixed(3)} instance(s).`);
}

main();
