/**
 * `direct`: P pairs of users chatting one-to-one over long connections at an open-loop aggregate rate. The rate
 * steps up (× `--factor` every `--step-seconds`) until p99 delivery latency passes `--p99-limit` ms, a message is
 * lost, doubled or unanswered, or the server stops keeping up; then up to `--bisect-steps` steps bisect between
 * the last passing and the first failing rate until they are within `--precision`; the result is the highest
 * sustainable rate and the latency at half of it. Every answered send is durable (committed) on Synchat; the
 * baseline relay persists nothing.
 *
 *   npm run bench -- direct [--pairs 500] [--transport tcp|ws|longpoll] [--start-rate 1000] [--factor 1.5]
 *                           [--max-rate 80000] [--step-seconds 5] [--p99-limit 200] [--bisect-steps 3]
 *                           [--precision 0.1] [--warmup-seconds 0] [--server-workers 2] [--password-log2n 10] [--baseline true]
 *                           [--store sqlite|postgres] [--nodes 1] [--base-port P] [--json FILE]
 *
 * `--store postgres` runs the node on a fresh PostgreSQL database; `--nodes N` (≥ 2: PostgreSQL and Redis) runs N
 * nodes as one service and spreads the devices over them, so a pair's two users sit on different nodes
 * (bench/lib/target.ts). The record gives the CPU per message of the nodes, PostgreSQL and Redis (`cpuAtMax`).
 */
import { befriendAll, runTag } from '../lib/setup.ts';
import { connectDevices, openRun, population, startWorkers, usage } from '../lib/harness.ts';
import { parseArgs } from '../lib/proc.ts';
import { printBlock, writeResult } from '../lib/result.ts';
import { bestStep, cpuByPart, cpuByPartText, devicesOwed, stepUp, type PlanItem } from '../lib/steps.ts';
import { withProgress } from '../lib/progress.ts';
import type { DeviceSpec } from '../lib/pool.ts';

const DEFAULTS = { pairs: '500', transport: 'tcp', 'start-rate': '1000', factor: '1.5', 'max-rate': '80000', 'step-seconds': '5', 'p99-limit': '200', 'bisect-steps': '3', precision: '0.1', 'warmup-seconds': '0', 'content-bytes': '64', 'server-workers': '2', baseline: 'true', json: '' };

async function measure(o: Record<string, string>, kind: 'synchat' | 'baseline'): Promise<Record<string, unknown>> {
  const run = await openRun(o, kind);
  try {
    const pairs = Number(o.pairs);
    const users = await population(run, `dm${runTag()}_`, 2 * pairs);
    let done = 0;
    await withProgress('contacts', pairs, () => ({ done }), () =>
      befriendAll(run.target.endpoint.httpUrl, Array.from({ length: pairs }, (_, i) => [users[2 * i]!, users[2 * i + 1]!] as [typeof users[0], typeof users[0]]), (n) => (done = n)),
    );
    const specs: DeviceSpec[] = users.map((u, i) => ({ id: i, username: u.username, sid: u.sids[0]! }));
    const pool = await startWorkers(run, o, specs.length);
    const c = await connectDevices(run, specs, 200);
    if (c.failed) throw new Error(`${c.failed} devices failed to connect: ${c.firstError}`);
    const W = pool.children.length;
    const plans: PlanItem[][] = Array.from({ length: W }, () => []);
    specs.forEach((s, i) => plans[i % W]!.push({ connId: s.id, to: users[i ^ 1]!.username }));
    const r = await stepUp(run, plans, Number(o['start-rate']), Number(o.factor), Number(o['max-rate']), {
      seconds: Number(o['step-seconds']),
      p99LimitMs: Number(o['p99-limit']),
      contentBytes: Number(o['content-bytes']),
      recipientDevices: devicesOwed(specs, (item) => [item.to]),
      maxBisectSteps: Number(o['bisect-steps']),
      precision: Number(o.precision),
      warmupSeconds: Number(o['warmup-seconds']),
      label: `direct·${kind}·${run.transport}`,
    });
    const best = bestStep(r.steps);
    const result = {
      target: run.target.kind,
      transport: run.transport,
      pairs,
      connections: c.connected,
      maxSustainablePerSec: r.maxSustainablePerSec,
      firstFailingPerSec: r.firstFailingPerSec,
      p99AtHalfMs: r.atHalf?.latency.p99Ms ?? null,
      p99AtMaxMs: best?.latency.p99Ms ?? null,
      cpuAtMax: cpuByPart(best),
      atHalf: r.atHalf,
      steps: r.steps,
      lostTotal: [...r.steps, ...(r.atHalf ? [r.atHalf] : [])].reduce((a, s) => a + s.lost, 0),
      duplicatesTotal: [...r.steps, ...(r.atHalf ? [r.atHalf] : [])].reduce((a, s) => a + s.duplicates, 0),
      unansweredTotal: [...r.steps, ...(r.atHalf ? [r.atHalf] : [])].reduce((a, s) => a + s.unanswered, 0),
      targetSettings: run.target.settings,
      usage: usage(run),
    };
    printBlock(`direct · ${kind} · ${run.transport}`, {
      maxSustainablePerSec: result.maxSustainablePerSec,
      firstFailingPerSec: result.firstFailingPerSec ?? 'none',
      p99AtMaxMs: result.p99AtMaxMs ?? 'n/a',
      cpuAtMax: cpuByPartText(best),
      firstFailure: r.steps.find((s) => !s.passed && s.phase !== 'warmup')?.why ?? 'none (max rate reached)',
      atHalf: r.atHalf ? `${r.atHalf.offeredPerSec}/s: p50 ${r.atHalf.latency.p50Ms} p99 ${r.atHalf.latency.p99Ms} p99.9 ${r.atHalf.latency.p999Ms} ms` : 'n/a',
      lostTotal: result.lostTotal,
      duplicatesTotal: result.duplicatesTotal,
      unansweredTotal: result.unansweredTotal,
    });
    return result;
  } finally {
    await run.close();
  }
}

/** Runs the scenario (then the baseline relay over WebSocket, unless `--baseline false` or `--url`). */
export async function run(argv: string[]): Promise<void> {
  const o = parseArgs(argv, DEFAULTS);
  const runs = [await measure(o, 'synchat')];
  if (o.baseline === 'true' && !o.url) runs.push(await measure({ ...o, transport: 'ws' }, 'baseline'));
  const [s, b] = runs as any[];
  const ratios = b ? { maxRateVsBaseline: +(s.maxSustainablePerSec / Math.max(1, b.maxSustainablePerSec)).toFixed(2) } : {};
  if (b) printBlock('direct · Synchat / baseline', ratios);
  writeResult(o.json || undefined, 'direct', o, { runs, ratios });
}
