/**
 * `group`: groups of `--sizes` members (default 50 and 500); every member holds one long connection and a few
 * members send into their group at an open-loop message rate that steps up until p99 delivery latency passes
 * `--p99-limit` ms or a delivery is lost, doubled or unanswered, then bisects the knee (`--bisect-steps`,
 * `--precision`, as in `direct`). Figures are deliveries/s (messages × other members' devices).
 * Groups are created by a hub user who befriends every member first (members must be the creator's contacts).
 *
 *   npm run bench -- group [--sizes 50,500] [--senders 10] [--transport tcp|ws|longpoll] [--start-deliveries 5000]
 *                          [--factor 1.5] [--max-deliveries 400000] [--step-seconds 5] [--p99-limit 200]
 *                          [--bisect-steps 3] [--precision 0.1] [--warmup-seconds 0] [--server-workers 2] [--baseline true]
 *                          [--store sqlite|postgres] [--nodes 1] [--json FILE]
 *
 * `--store` and `--nodes` as in `direct`: with N nodes the members (and the senders) are spread over them.
 */
import { befriendAll, createGroup, runTag, type SimUser } from '../lib/setup.ts';
import { connectDevices, openRun, population, startWorkers, usage } from '../lib/harness.ts';
import { parseArgs } from '../lib/proc.ts';
import { printBlock, writeResult } from '../lib/result.ts';
import { bestStep, cpuByPart, cpuByPartText, devicesOwed, stepUp, type PlanItem } from '../lib/steps.ts';
import { withProgress } from '../lib/progress.ts';
import type { DeviceSpec } from '../lib/pool.ts';

const DEFAULTS = { sizes: '50,500', senders: '10', transport: 'tcp', 'start-deliveries': '5000', factor: '1.5', 'max-deliveries': '400000', 'step-seconds': '5', 'p99-limit': '200', 'bisect-steps': '3', precision: '0.1', 'warmup-seconds': '0', 'content-bytes': '64', 'server-workers': '2', baseline: 'true', json: '' };

async function measure(o: Record<string, string>, kind: 'synchat' | 'baseline', size: number): Promise<Record<string, unknown>> {
  const run = await openRun(o, kind);
  try {
    // users[0] is the hub (creator); it is a member but does not connect.
    const users = await population(run, `gr${runTag()}_`, size);
    const hub = users[0]!;
    let done = 0;
    await withProgress('hub contacts', size - 1, () => ({ done }), () =>
      befriendAll(run.target.endpoint.httpUrl, users.slice(1).map((u) => [hub, u] as [SimUser, SimUser]), (n) => (done = n)),
    );
    const groupId = await createGroup(run.target.endpoint.httpUrl, hub, `bench ${size}`, users.slice(1));
    const members = users.slice(1);
    const specs: DeviceSpec[] = members.map((u, i) => ({ id: i, username: u.username, sid: u.sids[0]! }));
    const pool = await startWorkers(run, o, specs.length);
    const c = await connectDevices(run, specs, 200);
    if (c.failed) throw new Error(`${c.failed} devices failed to connect: ${c.firstError}`);
    const W = pool.children.length;
    const plans: PlanItem[][] = Array.from({ length: W }, () => []);
    const senders = Math.min(Number(o.senders), specs.length);
    for (let i = 0; i < senders; i++) plans[i % W]!.push({ connId: specs[i]!.id, to: groupId });
    const fanout = specs.length - 1; // every other member's one device
    const memberNames = members.map((m) => m.username);
    const r = await stepUp(run, plans, Math.max(1, Math.round(Number(o['start-deliveries']) / fanout)), Number(o.factor), Math.round(Number(o['max-deliveries']) / fanout), {
      seconds: Number(o['step-seconds']),
      p99LimitMs: Number(o['p99-limit']),
      contentBytes: Number(o['content-bytes']),
      recipientDevices: devicesOwed(specs, () => memberNames),
      maxBisectSteps: Number(o['bisect-steps']),
      precision: Number(o.precision),
      warmupSeconds: Number(o['warmup-seconds']),
      label: `group${size}·${kind}·${run.transport}`,
    });
    const best = bestStep(r.steps);
    const result = {
      target: run.target.kind,
      transport: run.transport,
      groupSize: size,
      connections: c.connected,
      senders,
      maxSustainableMsgsPerSec: r.maxSustainablePerSec,
      firstFailingMsgsPerSec: r.firstFailingPerSec,
      maxSustainableDeliveriesPerSec: best?.deliveredPerSec ?? 0,
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
    printBlock(`group of ${size} · ${kind} · ${run.transport}`, {
      maxSustainableDeliveriesPerSec: result.maxSustainableDeliveriesPerSec,
      maxSustainableMsgsPerSec: result.maxSustainableMsgsPerSec,
      firstFailingMsgsPerSec: result.firstFailingMsgsPerSec ?? 'none',
      p99AtMaxMs: result.p99AtMaxMs,
      cpuAtMax: cpuByPartText(best),
      firstFailure: r.steps.find((s) => !s.passed && s.phase !== 'warmup')?.why ?? 'none (max rate reached)',
      lostTotal: result.lostTotal,
      duplicatesTotal: result.duplicatesTotal,
      unansweredTotal: result.unansweredTotal,
    });
    return result;
  } finally {
    await run.close();
  }
}

/** Runs every group size against Synchat, then against the baseline relay (unless `--baseline false` or `--url`). */
export async function run(argv: string[]): Promise<void> {
  const o = parseArgs(argv, DEFAULTS);
  const sizes = o.sizes!.split(',').map(Number);
  const runs = [];
  for (const size of sizes) runs.push(await measure(o, 'synchat', size));
  if (o.baseline === 'true' && !o.url) for (const size of sizes) runs.push(await measure({ ...o, transport: 'ws' }, 'baseline', size));
  writeResult(o.json || undefined, 'group', o, { runs });
}
