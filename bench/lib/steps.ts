/**
 * Open-loop load steps: every worker sends its share of an aggregate rate on a fixed schedule for a while
 * (latency counts from the scheduled time), then the controller waits for the deliveries to drain and reads
 * what arrived: delivered/s, latency, lost (acknowledged sends whose recipients never saw them) and duplicates.
 * `stepUp` raises the rate by a factor until p99 passes the limit, a message is lost, or the server stops keeping
 * up, then runs one more step at half the highest sustainable rate.
 */
import { mergeHistograms, summarize, type LatencySummary } from './hist.ts';
import { deliveryStats, meanCores, settle, type Run } from './harness.ts';
import { Progress } from './progress.ts';

/** One sender: a device id and the peer it writes to. */
export interface PlanItem {
  connId: number;
  to: string;
}

/** What one step measured. */
export interface StepResult {
  offeredPerSec: number;
  sentPerSec: number;
  ackedPerSec: number;
  deliveredPerSec: number;
  expectedDeliveries: number;
  deliveries: number;
  lost: number;
  duplicates: number;
  errors: number;
  skipped: number;
  firstError: string;
  latency: LatencySummary;
  ackLatency: LatencySummary;
  serverCores: number;
  /** Mean cores of the busiest server process (near 1.0: that process is the bottleneck). */
  serverHottestProcessCores: number;
  clientCores: number;
  serverRssMiB: number;
  passed: boolean;
  why: string;
}

/** Options of a step run. */
export interface StepOptions {
  seconds: number;
  p99LimitMs: number;
  contentBytes: number;
  /** Recipient devices (other users' online connections) a message from plan item `item` reaches. */
  recipients(item: PlanItem): number;
  /** Label for the progress line. */
  label: string;
}

/** Runs one open-loop step at `ratePerSec` (messages/s, all workers together). `plans[w]` is worker w's senders. */
export async function loadStep(run: Run, plans: PlanItem[][], ratePerSec: number, opt: StepOptions): Promise<StepResult> {
  const pool = run.pool!;
  const W = pool.children.length;
  const active = plans.filter((p) => p.length > 0).length;
  await deliveryStats(run, true);
  const t0 = run.serverMon.sample().t;
  const c0 = run.clientMon.sample().t;
  let delivered = 0;
  const prog = new Progress(`${opt.label} @ ${ratePerSec}/s`, Math.round(opt.seconds), () => ({ done: Math.min(Math.round(opt.seconds), Math.round(run.serverMon.samples.at(-1)!.t - t0)), text: `server ${run.serverMon.samples.at(-1)?.cpuCores ?? 0} cores` })).start();
  const answers = await pool.all((w) =>
    plans[w]!.length ? { cmd: 'send', plan: plans[w]!, ratePerSec: ratePerSec / active, durationMs: opt.seconds * 1000, contentBytes: opt.contentBytes, maxOutstanding: Math.max(2000, ratePerSec) } : undefined,
  );
  prog.stop();
  const t1 = run.serverMon.sample().t;
  const c1 = run.clientMon.sample().t;
  let expected = 0;
  for (let w = 0; w < W; w++) {
    const a = answers[w];
    if (!a) continue;
    plans[w]!.forEach((item, i) => (expected += a.ackedPerPlan[i] * opt.recipients(item)));
  }
  // Drain: wait until every expected delivery arrived, or 5 s without progress.
  let stats = await deliveryStats(run, false);
  let lastProgress = performance.now();
  while (stats.uniqueDeliveries < expected && performance.now() - lastProgress < 5000) {
    await settle(100);
    const s = await deliveryStats(run, false);
    if (s.uniqueDeliveries > stats.uniqueDeliveries) lastProgress = performance.now();
    stats = s;
  }
  delivered = stats.uniqueDeliveries;
  const sum = (k: string) => answers.reduce((acc, a) => acc + (a ? a[k] : 0), 0);
  const elapsed = opt.seconds;
  const latency = stats.latency;
  const lost = Math.max(0, expected - delivered);
  const acked = sum('acked');
  const errors = sum('errors');
  const skipped = sum('skipped');
  const res: StepResult = {
    offeredPerSec: ratePerSec,
    sentPerSec: Math.round(sum('sent') / elapsed),
    ackedPerSec: Math.round(acked / elapsed),
    deliveredPerSec: Math.round(delivered / elapsed),
    expectedDeliveries: expected,
    deliveries: delivered,
    lost,
    duplicates: stats.duplicates,
    errors,
    skipped,
    firstError: answers.map((a) => a?.firstError).find(Boolean) ?? '',
    latency,
    ackLatency: summarize(mergeHistograms(answers.map((a) => a?.ackHist ?? ''))),
    serverCores: meanCores(run.serverMon.samples, t0, t1),
    serverHottestProcessCores: meanCores(run.serverMon.samples, t0, t1, 'hottestCores'),
    clientCores: meanCores(run.clientMon.samples, c0, c1),
    serverRssMiB: run.serverMon.samples.at(-1)!.rssMiB,
    passed: true,
    why: '',
  };
  const why: string[] = [];
  if (latency.p99Ms > opt.p99LimitMs) why.push(`p99 ${latency.p99Ms} ms > ${opt.p99LimitMs} ms`);
  if (lost > 0) why.push(`${lost} lost`);
  if (stats.duplicates > 0) why.push(`${stats.duplicates} duplicated`);
  if (errors > 0) why.push(`${errors} send errors (${res.firstError})`);
  if (skipped > 0) why.push(`${skipped} sends skipped: ${Math.max(2000, ratePerSec)} unanswered in flight`);
  if (acked < 0.95 * ratePerSec * elapsed) why.push(`acked ${res.ackedPerSec}/s < 95% of offered`);
  res.passed = why.length === 0;
  res.why = why.join('; ');
  const l = res.latency;
  console.log(
    `  ${opt.label} offered ${ratePerSec}/s → acked ${res.ackedPerSec}/s, delivered ${res.deliveredPerSec}/s, p50 ${l.p50Ms} p99 ${l.p99Ms} max ${l.maxMs} ms, lost ${lost}, dup ${stats.duplicates}, server ${res.serverCores} cores (busiest process ${res.serverHottestProcessCores}), client ${res.clientCores} cores${res.passed ? '' : ' ✗ ' + res.why}`,
  );
  return res;
}

/** Steps the rate up from `start` by `factor` until a step fails (or `max`); then one step at half the best. */
export async function stepUp(run: Run, plans: PlanItem[][], start: number, factor: number, max: number, opt: StepOptions): Promise<{ steps: StepResult[]; maxSustainablePerSec: number; atHalf: StepResult | null }> {
  const steps: StepResult[] = [];
  let best = 0;
  for (let rate = start; rate <= max; rate = Math.round(rate * factor)) {
    const s = await loadStep(run, plans, rate, opt);
    steps.push(s);
    if (!s.passed) break;
    best = rate;
  }
  let atHalf: StepResult | null = null;
  if (best > 0) {
    // Let the failed step's backlog drain first, or its queue shows up in the half-rate step's latency.
    await settle(5000);
    atHalf = await loadStep(run, plans, Math.round(best / 2), { ...opt, label: `${opt.label} (half of max)` });
  }
  return { steps, maxSustainablePerSec: best, atHalf };
}
