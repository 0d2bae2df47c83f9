/**
 * Open-loop load steps: every worker sends its share of an aggregate rate on a fixed schedule for a while
 * (latency counts from the scheduled time), then the controller waits for the deliveries to drain and reconciles
 * per (message, device) what the server acknowledged with what came off the wire (reconcile.ts): lost,
 * duplicated, unanswered, misrouted. `stepUp` raises the rate by a factor until a step fails (p99 past the limit,
 * a message lost, doubled or unanswered, or the server not keeping up), bisects between the last passing and the
 * first failing rate until the knee is known within `precision`, then runs one more step at half the highest
 * sustainable rate.
 */
import { mergeHistograms, summarize, type LatencySummary } from './hist.ts';
import { deliveryStats, meanCores, settle, type Run } from './harness.ts';
import { Progress } from './progress.ts';
import type { DeviceSpec } from './pool.ts';
import { MAX_LOST_DEVICES, mergeReconciliations, type PairSample, type Reconciliation } from './reconcile.ts';

/** One sender: a device id and the peer it writes to. */
export interface PlanItem {
  connId: number;
  to: string;
}

/** What one step measured. */
export interface StepResult {
  /** The step's number in the run (its messages' clientMsgIds carry it). */
  step: number;
  /**
   * `ramp`: a step of the ×factor ramp; `bisect`: between the last passing and first failing rate; `half`: at half
   * the max; `warmup`: before the ramp, at its first rate, to let JIT and caches settle (neither passes nor fails the run).
   */
  phase: 'warmup' | 'ramp' | 'bisect' | 'half' | 'single';
  offeredPerSec: number;
  sentPerSec: number;
  ackedPerSec: number;
  /** Owed (message, device) pairs delivered per second of the step. */
  deliveredPerSec: number;
  /** Owed (message, device) pairs: acknowledged sends × the devices each is owed to. */
  expectedDeliveries: number;
  /** Owed pairs that arrived (at least once). */
  deliveries: number;
  /** Owed pairs that never arrived (reconciliation.lost). */
  lost: number;
  /** Unasked extra copies on the wire (reconciliation.duplicates). */
  duplicates: number;
  /** Sends answered with ret ≠ 0, or whose connection closed first. */
  errors: number;
  /** Sends with no answer by the answer deadline. */
  unanswered: number;
  skipped: number;
  firstError: string;
  latency: LatencySummary;
  ackLatency: LatencySummary;
  serverCores: number;
  /** Mean cores of the busiest server process (near 1.0: that process is the bottleneck). */
  serverHottestProcessCores: number;
  clientCores: number;
  /** CPU the load tool's workers spent per acknowledged message over the step and its drain, in µs. */
  clientWorkerCpuUsPerMsg: number;
  /** The part of it spent in the kernel (socket reads and writes; on loopback a write also runs the receiver's TCP input), in µs. */
  clientWorkerKernelUsPerMsg: number;
  serverRssMiB: number;
  /** Server (every node's process tree) CPU per acknowledged message: serverCores ÷ acked/s, in µs. */
  serverCpuUsPerMsg: number;
  /**
   * CPU of each part the target accounts apart (Target.parts: `node0`…, `postgres`, `postgresOtherDbs`, `redis`)
   * over the step: mean cores, and µs per acknowledged message (cores ÷ acked/s), as `serverCpuUsPerMsg`.
   */
  parts: Record<string, PartCpu>;
  /**
   * PostgreSQL over the step and its drain (the whole server's, other databases' included), per acknowledged
   * message: WAL bytes and transactions that wrote (a batch of the group commit is one). Absent on SQLite.
   */
  postgres?: {
    walBytesPerMsg: number;
    writeTransactionsPerMsg: number;
    /**
     * The nodes' backends sampled every 100 ms while the step sends: mean backends per `<state>:<wait event type>:
     * <wait event>` (`active:-:-` runs a statement; `idle in transaction:Client:ClientRead` waits for its node inside a
     * transaction; `active:Lock:…` waits for a lock; `active:IO:WALSync` for the disk).
     */
    backends: Record<string, number>;
  };
  /** The per-(message, device) reconciliation, with samples and the time it took. */
  reconciliation: Reconciliation & { reconcileMs: number; workerMs: number };
  passed: boolean;
  why: string;
}

/** One part's CPU over a step. */
export interface PartCpu {
  cores: number;
  cpuUsPerMsg: number;
}

/** Options of a step run. */
export interface StepOptions {
  seconds: number;
  p99LimitMs: number;
  contentBytes: number;
  /**
   * The online devices (connIds) a message sent by plan item `item` is owed to: every device of every recipient
   * and the sender's other devices (each device of an account gets everything), not the sending device itself.
   */
  recipientDevices(item: PlanItem): readonly number[];
  /** Label for the progress line. */
  label: string;
  /** After the schedule, how long a send may wait for SEND_ACK before it counts as unanswered, in ms. @default 15000 */
  answerTimeoutMs?: number;
  /** The drain ends when every owed pair arrived or none arrived for this long, in ms. @default 5000 */
  drainIdleMs?: number;
  /** Progress phase recorded in the result. @default 'single' */
  phase?: StepResult['phase'];
}

/**
 * A `recipientDevices` for the devices held (`specs`): a message plan item `item` sends to the users
 * `recipientUsers(item)` is owed to every device of each of them and to the sender's other devices — every device
 * of an account gets everything — but not to the sending device.
 */
export function devicesOwed(specs: readonly DeviceSpec[], recipientUsers: (item: PlanItem) => readonly string[]): (item: PlanItem) => number[] {
  const byUser = new Map<string, number[]>();
  const userOf = new Map<number, string>();
  for (const s of specs) {
    userOf.set(s.id, s.username);
    const list = byUser.get(s.username);
    if (list) list.push(s.id);
    else byUser.set(s.username, [s.id]);
  }
  return (item) => {
    const out = new Set<number>();
    for (const u of [...recipientUsers(item), userOf.get(item.connId)!]) for (const d of byUser.get(u) ?? []) if (d !== item.connId) out.add(d);
    return [...out];
  };
}

/** Runs one open-loop step at `ratePerSec` (messages/s, all workers together). `plans[w]` is worker w's senders. */
export async function loadStep(run: Run, plans: PlanItem[][], ratePerSec: number, opt: StepOptions): Promise<StepResult> {
  const pool = run.pool!;
  const W = pool.children.length;
  const active = plans.filter((p) => p.length > 0).length;
  const step = ++run.stepCount;
  // Global item numbers: worker w's plans[w][i] is item firstItem[w] + i. Routes: who is owed what.
  const firstItem: number[] = [];
  let items = 0;
  for (const p of plans) {
    firstItem.push(items);
    items += p.length;
  }
  const owedDevices = new Array<number>(items).fill(0);
  const routes: number[][] = Array.from({ length: W }, () => []);
  const routedItems: Set<number>[] = Array.from({ length: W }, () => new Set());
  const route = (connId: number, item: number, isRequired: boolean) => {
    const w = run.deviceWorker.get(connId);
    if (w === undefined) throw new Error(`device ${connId} is in no worker (connect it with connectDevices)`);
    routes[w]!.push(connId, item, isRequired ? 1 : 0);
    routedItems[w]!.add(item);
  };
  plans.forEach((plan, w) =>
    plan.forEach((p, i) => {
      const item = firstItem[w]! + i;
      if (run.deviceWorker.get(p.connId) !== w) throw new Error(`plans[${w}] holds device ${p.connId}, which worker ${run.deviceWorker.get(p.connId)} holds`);
      const owed = new Set(opt.recipientDevices(p));
      owed.delete(p.connId);
      owedDevices[item] = owed.size;
      for (const d of owed) route(d, item, true);
      route(p.connId, item, false);
    }),
  );
  const expectedPerItem = Math.ceil((ratePerSec * opt.seconds) / Math.max(1, items));
  await pool.all((w) => ({ cmd: 'expect', step, routes: routes[w]!, expectedPerItem }));
  await deliveryStats(run, true);
  const workerCpu = async () => {
    const counts = await pool.all(() => ({ cmd: 'count' }));
    return { total: counts.reduce((a, r) => a + r.cpuSeconds, 0), kernel: counts.reduce((a, r) => a + r.systemCpuSeconds, 0) };
  };
  const cpu0 = await workerCpu();
  const pg0 = await run.target.pgCounters?.();
  const partT0 = new Map([...run.partMons].map(([name, m]) => [name, m.sample().t]));
  const t0 = run.serverMon.sample().t;
  const c0 = run.clientMon.sample().t;
  const prog = new Progress(`${opt.label} @ ${ratePerSec}/s`, Math.round(opt.seconds), () => ({ done: Math.min(Math.round(opt.seconds), Math.round(run.serverMon.samples.at(-1)!.t - t0)), text: `server ${run.serverMon.samples.at(-1)?.cpuCores ?? 0} cores` })).start();
  const backendSamples = run.target.pgBackendStates ? sampleBackends(run.target.pgBackendStates) : undefined;
  const maxOutstanding = Math.max(2000, ratePerSec);
  const answers = await pool.all((w) =>
    plans[w]!.length
      ? { cmd: 'send', step, firstItem: firstItem[w]!, plan: plans[w]!, ratePerSec: ratePerSec / active, durationMs: opt.seconds * 1000, contentBytes: opt.contentBytes, maxOutstanding, answerTimeoutMs: opt.answerTimeoutMs ?? 15_000 }
      : undefined,
  );
  prog.stop();
  const backends = await backendSamples?.stop();
  const t1 = run.serverMon.sample().t;
  const c1 = run.clientMon.sample().t;
  const partT1 = new Map([...run.partMons].map(([name, m]) => [name, m.sample().t]));
  const ackedBits: (Uint8Array | null)[] = new Array(items).fill(null);
  let expected = 0;
  for (let w = 0; w < W; w++) {
    const a = answers[w];
    if (!a) continue;
    a.ackedBits.forEach((bits: Uint8Array, i: number) => {
      ackedBits[firstItem[w]! + i] = bits;
      expected += a.ackedPerPlan[i] * owedDevices[firstItem[w]! + i]!;
    });
  }
  // Drain: until every owed pair arrived once, or none arrived for drainIdleMs.
  const pairsSeen = async () => (await pool.all(() => ({ cmd: 'count' }))).reduce((a, r) => a + r.pairsSeen, 0);
  let seen = await pairsSeen();
  let lastProgress = performance.now();
  while (seen < expected && performance.now() - lastProgress < (opt.drainIdleMs ?? 5000)) {
    await settle(100);
    const s = await pairsSeen();
    if (s > seen) lastProgress = performance.now();
    seen = s;
  }
  const cpu1 = await workerCpu();
  const pg1 = await run.target.pgCounters?.();
  // Reconcile: each worker gets the acknowledged bitmaps of the items its devices are owed (one bit per send).
  const tR = performance.now();
  const parts = await pool.all((w) => ({ cmd: 'reconcile', step, acked: ackedBits.map((b, item) => (routedItems[w]!.has(item) ? b : null)) }));
  const rec = mergeReconciliations(parts);
  const reconciliation = { ...rec, reconcileMs: +(performance.now() - tR).toFixed(1), workerMs: Math.max(...parts.map((p) => p.workerMs)) };
  await nameSamples(run, step, firstItem, [rec.lostSamples, rec.duplicateSamples, rec.unexpectedSamples]);
  const stats = await deliveryStats(run, false);
  const sum = (k: string) => answers.reduce((acc, a) => acc + (a ? a[k] : 0), 0);
  const elapsed = opt.seconds;
  const latency = stats.latency;
  const acked = sum('acked');
  const errors = sum('errors');
  const unanswered = sum('unanswered');
  const skipped = sum('skipped');
  const usPerMsg = (cores: number) => (acked ? Math.round((cores * 1e6 * elapsed) / acked) : 0);
  const serverCores = meanCores(run.serverMon.samples, t0, t1);
  const partCpu: Record<string, PartCpu> = {};
  for (const [name, m] of run.partMons) {
    const cores = meanCores(m.samples, partT0.get(name)!, partT1.get(name)!);
    partCpu[name] = { cores, cpuUsPerMsg: usPerMsg(cores) };
  }
  const perMsg = (d: number) => (acked ? +(d / acked).toFixed(2) : 0);
  const res: StepResult = {
    step,
    phase: opt.phase ?? 'single',
    offeredPerSec: ratePerSec,
    sentPerSec: Math.round(sum('sent') / elapsed),
    ackedPerSec: Math.round(acked / elapsed),
    deliveredPerSec: Math.round(rec.deliveredPairs / elapsed),
    expectedDeliveries: rec.expectedPairs,
    deliveries: rec.deliveredPairs,
    lost: rec.lost,
    duplicates: rec.duplicates,
    errors,
    unanswered,
    skipped,
    firstError: answers.map((a) => a?.firstError).find(Boolean) ?? '',
    latency,
    ackLatency: summarize(mergeHistograms(answers.map((a) => a?.ackHist ?? ''))),
    serverCores,
    serverHottestProcessCores: meanCores(run.serverMon.samples, t0, t1, 'hottestCores'),
    clientCores: meanCores(run.clientMon.samples, c0, c1),
    clientWorkerCpuUsPerMsg: acked ? Math.round(((cpu1.total - cpu0.total) * 1e6) / acked) : 0,
    clientWorkerKernelUsPerMsg: acked ? Math.round(((cpu1.kernel - cpu0.kernel) * 1e6) / acked) : 0,
    serverRssMiB: run.serverMon.samples.at(-1)!.rssMiB,
    serverCpuUsPerMsg: usPerMsg(serverCores),
    parts: partCpu,
    ...(pg0 && pg1 ? { postgres: { walBytesPerMsg: perMsg(pg1.walBytes - pg0.walBytes), writeTransactionsPerMsg: +((pg1.writeTransactions - pg0.writeTransactions) / Math.max(1, acked)).toFixed(4), backends: backends ?? {} } } : {}),
    reconciliation,
    passed: true,
    why: '',
  };
  if (rec.expectedPairs !== expected) throw new Error(`reconciliation counted ${rec.expectedPairs} owed pairs, the senders' answers ${expected}: a route is missing`);
  const why: string[] = [];
  if (latency.p99Ms > opt.p99LimitMs) why.push(`p99 ${latency.p99Ms} ms > ${opt.p99LimitMs} ms`);
  if (rec.lost > 0) why.push(`${rec.lost} lost on ${rec.lostDevices.length}${rec.lostDevices.length === MAX_LOST_DEVICES ? '+' : ''} device(s) (e.g. ${sampleText(rec.lostSamples)}; ${await lostDeviceText(run, rec.lostDevices)})`);
  if (rec.duplicates > 0) why.push(`${rec.duplicates} duplicated (e.g. ${sampleText(rec.duplicateSamples)})`);
  if (rec.unexpected > 0) why.push(`${rec.unexpected} delivered to devices not owed them (e.g. ${sampleText(rec.unexpectedSamples)})`);
  if (unanswered > 0) why.push(`${unanswered} sends unanswered after ${(opt.answerTimeoutMs ?? 15_000) / 1000} s`);
  if (errors > 0) why.push(`${errors} send errors (${res.firstError})`);
  if (skipped > 0) why.push(`${skipped} sends skipped: ${maxOutstanding} unanswered in flight`);
  // Each active worker schedules ⌊seconds × its share of the rate⌋ sends (client-worker.ts): at a few msgs/s the
  // rounding alone is more than 5% of the step, so the bar is what was scheduled, not rate × seconds.
  const scheduled = active * Math.floor((opt.seconds * ratePerSec) / active);
  if (acked < 0.95 * scheduled) why.push(`acked ${res.ackedPerSec}/s < 95% of offered`);
  res.passed = why.length === 0;
  res.why = why.join('; ');
  const l = res.latency;
  console.log(
    `  ${opt.label} offered ${ratePerSec}/s → acked ${res.ackedPerSec}/s, delivered ${res.deliveredPerSec}/s, p50 ${l.p50Ms} p99 ${l.p99Ms} max ${l.maxMs} ms, lost ${rec.lost}, dup ${rec.duplicates}, unanswered ${unanswered}, server ${res.serverCores} cores (busiest process ${res.serverHottestProcessCores}; ${res.serverCpuUsPerMsg} µs/msg)${partsText(res.parts)}${res.postgres ? ` (${res.postgres.writeTransactionsPerMsg} write transactions, ${res.postgres.walBytesPerMsg} B of WAL per msg; backends ${topBackends(res.postgres.backends)})` : ''}, client ${res.clientCores} cores (${res.clientWorkerCpuUsPerMsg} µs/msg, kernel ${res.clientWorkerKernelUsPerMsg})${res.passed ? '' : ' ✗ ' + res.why}`,
  );
  return res;
}

/** The three commonest backend states with their mean counts: "idle:Client:ClientRead 6.2, active:-:- 0.8, …". */
function topBackends(backends: Record<string, number>): string {
  return Object.entries(backends)
    .slice(0, 3)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
}

/** Samples `states()` every 100 ms until stopped; `stop()` gives the mean count of each state per sample. */
function sampleBackends(states: () => Promise<string[]>): { stop(): Promise<Record<string, number>> } {
  const counts = new Map<string, number>();
  let samples = 0;
  let isStopped = false;
  const loop = (async () => {
    while (!isStopped) {
      for (const st of await states().catch(() => [])) counts.set(st, (counts.get(st) ?? 0) + 1);
      samples++;
      await settle(100);
    }
  })();
  return {
    async stop() {
      isStopped = true;
      await loop;
      return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => [k, +(n / Math.max(1, samples)).toFixed(2)]));
    },
  };
}

/** The passing step with the highest offered rate (bisection runs lower rates after higher ones; warm-up steps do not count); undefined if none passed. */
export function bestStep(steps: readonly StepResult[]): StepResult | undefined {
  return steps.filter((s) => s.passed && s.phase !== 'warmup').sort((a, b) => b.offeredPerSec - a.offeredPerSec)[0];
}

/** Cores and CPU µs per acknowledged message at a step, per part: `nodes` (the whole server), then Target.parts. */
export function cpuByPart(step: StepResult | undefined): Record<string, PartCpu> {
  if (!step) return {};
  return { nodes: { cores: step.serverCores, cpuUsPerMsg: step.serverCpuUsPerMsg }, ...step.parts };
}

/** "nodes 146 µs/msg (1.14 cores) · node0 … · postgres …": {@link cpuByPart} on one line, for a summary. */
export function cpuByPartText(step: StepResult | undefined): string {
  const parts = Object.entries(cpuByPart(step));
  return parts.length ? parts.map(([name, p]) => `${name} ${p.cpuUsPerMsg} µs/msg (${p.cores} cores)`).join(' · ') : 'n/a';
}

/** ", postgres 0.4 cores (55 µs/msg), redis …" for the parts that are not nodes (each node is part of "server"). */
export function partsText(parts: Record<string, PartCpu>): string {
  return Object.entries(parts)
    .filter(([name]) => !name.startsWith('node'))
    .map(([name, p]) => `, ${name} ${p.cores} cores (${p.cpuUsPerMsg} µs/msg)`)
    .join('');
}

/**
 * Where the devices that missed deliveries stand after the drain: their node, whether their connection is open,
 * and their syncKey against the head they were last told of (a device behind its known head is still syncing; one
 * at it was never told of the news).
 */
async function lostDeviceText(run: Run, devices: readonly number[]): Promise<string> {
  const wanted = new Set(devices);
  const heads = (await run.pool!.all(() => ({ cmd: 'heads' }))).flat() as { id: number; syncKey: number; knownHead: number; isOpen: boolean }[];
  const states = heads.filter((h) => wanted.has(h.id)).slice(0, 8);
  return states.map((h) => `device ${h.id} on node ${run.deviceNode.get(h.id) ?? 0}: ${h.isOpen ? 'open' : 'closed'}, syncKey ${h.syncKey} of known head ${h.knownHead}`).join(', ');
}

function sampleText(samples: readonly PairSample[]): string {
  return samples
    .slice(0, 3)
    .map((s) => `${s.clientMsgId}${s.msgId ? ` msgId ${s.msgId}` : ''} → device ${s.connId}`)
    .join(', ');
}

/** Fills each sample's msgId from the SEND_ACK its sender got. */
async function nameSamples(run: Run, step: number, firstItem: readonly number[], lists: PairSample[][]): Promise<void> {
  const all = lists.flat();
  if (all.length === 0) return;
  const workerOfItem = (item: number) => {
    let w = 0;
    while (w + 1 < firstItem.length && firstItem[w + 1]! <= item) w++;
    return w;
  };
  const byWorker = new Map<number, PairSample[]>();
  for (const s of all) {
    const w = workerOfItem(s.item);
    if (!byWorker.has(w)) byWorker.set(w, []);
    byWorker.get(w)!.push(s);
  }
  await Promise.all(
    [...byWorker].map(async ([w, samples]) => {
      const ids: number[] = await run.pool!.request(w, { cmd: 'msgIds', step, keys: samples.map((s) => [s.item, s.k] as [number, number]) });
      samples.forEach((s, i) => (s.msgId = Number.isNaN(ids[i]) ? '' : String(ids[i])));
    }),
  );
}

/** Options of {@link stepUp}. */
export interface StepUpOptions extends StepOptions {
  /** Bisect until (first failing − last passing) ≤ this fraction of the last passing rate. @default 0.1 */
  precision?: number;
  /** At most this many bisection steps after the first failure. @default 3 */
  maxBisectSteps?: number;
  /** Seconds of a warm-up step at `start` before the ramp (0: none). @default 0 */
  warmupSeconds?: number;
}

/** What {@link stepUp} found. */
export interface StepUpResult {
  /** Every step in the order run (ramp, then bisection). */
  steps: StepResult[];
  /** The highest rate that passed. */
  maxSustainablePerSec: number;
  /** The lowest rate that failed (null if none did): the knee lies between the two. */
  firstFailingPerSec: number | null;
  atHalf: StepResult | null;
}

/**
 * Steps the rate up from `start` by `factor` (after a warm-up step at `start`, if asked) until a step fails (or
 * `max`); then bisects between the last passing and the first failing rate (at most `maxBisectSteps`, until they are within `precision`); then one step at half
 * the best. Each step after a failed one waits 5 s first, so the failed step's backlog does not count against it.
 */
export async function stepUp(run: Run, plans: PlanItem[][], start: number, factor: number, max: number, opt: StepUpOptions): Promise<StepUpResult> {
  const steps: StepResult[] = [];
  let best = 0;
  let failing: number | null = null;
  let isBacklogged = false;
  const runStep = async (rate: number, phase: StepResult['phase'], label = opt.label, seconds = opt.seconds) => {
    // Let a failed step's backlog drain first, or its queue shows up in the next step's latency.
    if (isBacklogged) await settle(5000);
    const s = await loadStep(run, plans, rate, { ...opt, label, phase, seconds });
    isBacklogged = !s.passed;
    return s;
  };
  if ((opt.warmupSeconds ?? 0) > 0) steps.push(await runStep(start, 'warmup', `${opt.label} (warm-up)`, opt.warmupSeconds));
  for (let rate = start; rate <= max; rate = Math.round(rate * factor)) {
    const s = await runStep(rate, 'ramp');
    steps.push(s);
    if (!s.passed) {
      failing = rate;
      break;
    }
    best = rate;
    if (Math.round(rate * factor) <= rate) break;
  }
  const precision = opt.precision ?? 0.1;
  for (let i = 0; i < (opt.maxBisectSteps ?? 3) && best > 0 && failing !== null && (failing - best) / best > precision; i++) {
    const rate = Math.round((best + failing) / 2);
    if (rate <= best || rate >= failing) break;
    const s = await runStep(rate, 'bisect', `${opt.label} (bisect)`);
    steps.push(s);
    if (s.passed) best = rate;
    else failing = rate;
  }
  let atHalf: StepResult | null = null;
  if (best > 0) {
    isBacklogged = true;
    atHalf = await runStep(Math.round(best / 2), 'half', `${opt.label} (half of max)`);
  }
  return { steps, maxSustainablePerSec: best, firstFailingPerSec: failing, atHalf };
}
