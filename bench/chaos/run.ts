/**
 * One chaos run: start the target, set up users, run mixed traffic for `seconds` while `faults` faults strike at
 * random moments, then quiesce and check. A seed drives every random choice (operations, recipients, fault times
 * and kinds); timing still varies between runs, so a replay repeats the plan, not the exact interleaving.
 *
 * After every send ended answered or refused and every device caught up, each user's log is read back with a full
 * sync and check.ts counts lost, doubled and diverged; a refused send is a problem too (the traffic only sends what
 * the server should accept); then the storage: `PRAGMA integrity_check` (SQLite) and log density (both stores).
 */
import { api } from '../../test/helpers/server.ts';
import { checkRun } from './check.ts';
import { clusterTarget, singleTarget, type FaultRecord, type Target } from './targets.ts';
import { closeTraffic, runTraffic, setupTraffic, type Device, type Traffic } from './traffic.ts';

/** Options of one run. */
export interface ChaosOptions {
  seed: number;
  mode: 'single' | 'cluster';
  /** Seconds of traffic. */
  seconds: number;
  /** Faults injected during the traffic. */
  faults: number;
  /** Users per transport (each starts with two devices). */
  usersPerTransport: number;
  /**
   * Planned restarts instead of crashes: one node's gateway processes rolled (SIGHUP), or, in cluster mode, every
   * node drained (SIGTERM) and started again in turn; a drained node must exit 0 (targets.ts).
   */
  roll?: boolean;
  /** Gateway processes per node. @default 0, or 2 for a one-node roll */
  workers?: number;
  /** `SYNCHAT_DRAIN_MS` of the nodes, in ms. @default the server's */
  drainMs?: number;
  /**
   * When aborted (Ctrl-C), the target is torn down and the process exits 130, so no server, PostgreSQL or Redis
   * of the run is left behind (PostgreSQL runs as a daemon: it would not die with the terminal's signal).
   */
  signal?: AbortSignal;
}

/** What one run found. */
export interface ChaosResult {
  seed: number;
  mode: 'single' | 'cluster';
  ok: boolean;
  durationMs: number;
  faults: FaultRecord[];
  /** Nodes that exited on their own (not killed by the runner) and were restarted. */
  selfExits: number;
  sends: { total: number; answered: number; refused: number; unanswered: number; answeredDuplicate: number; resent: number; direct: number; group: number; image: number; tcp: number; ws: number; http: number };
  ops: Traffic['ops'];
  devices: number;
  users: number;
  logEntries: number;
  lost: number;
  doubled: number;
  diverged: number;
  integrity: string;
  densityProblems: number;
  /** The first problems found, described (empty when ok). */
  problems: string[];
}

/** mulberry32: a small seeded generator in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until `cond` holds or `guardMs` passed; returns whether it held. */
async function within(guardMs: number, cond: () => boolean | Promise<boolean>): Promise<boolean> {
  const until = Date.now() + guardMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > until) return false;
    await sleep(100);
  }
}

/** Every entry of a user's log, read with a full sync (pages of 200) on any node that answers. */
async function readLog(urls: string[], sid: string): Promise<any[]> {
  for (let attempt = 0; ; attempt++) {
    const url = urls[attempt % urls.length]!;
    try {
      const entries: any[] = [];
      let key = 0;
      for (;;) {
        const r = await api(url, '/api/sync', { syncKey: key, limit: 200 }, sid);
        if (r.body.ret !== 0) throw new Error(`sync: ${JSON.stringify(r.body)}`);
        entries.push(...r.body.entries);
        key = r.body.syncKey;
        if (!r.body.continueFlag) return entries;
      }
    } catch (err) {
      if (attempt >= 20) throw err;
      await sleep(250);
    }
  }
}

/** Runs one chaos run and checks it. */
export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  const random = seededRandom(opts.seed);
  const targetOptions = { ...(opts.roll ? { roll: true } : {}), ...(opts.workers !== undefined ? { workers: opts.workers } : {}), ...(opts.drainMs !== undefined ? { drainMs: opts.drainMs } : {}) };
  const target: Target = opts.mode === 'cluster' ? await clusterTarget(targetOptions) : await singleTarget(targetOptions);
  const onAbort = () => void target.dispose().finally(() => process.exit(130));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort(); // interrupted while the target started
  const problems: string[] = [];
  const problem = (p: string) => void (problems.length < 50 && problems.push(p));
  let traffic: Traffic | undefined;
  const started = Date.now();
  try {
    traffic = await setupTraffic(target.urls, opts.usersPerTransport);
    const t0 = Date.now();
    const stopAt = t0 + opts.seconds * 1000;
    // Fault moments: spread over 10 %..85 % of the traffic time, in order.
    const moments = Array.from({ length: opts.faults }, () => 0.1 + random() * 0.75).sort((a, b) => a - b).map((f) => Math.round(f * opts.seconds * 1000));
    const pauses = moments.map(() => Math.round(random() * 500));
    const faultRandom = seededRandom(opts.seed ^ 0x5eed);
    const pick = (n: number) => Math.floor(faultRandom() * n);
    const faults: FaultRecord[] = [];
    let selfExits = 0;
    const faulting = (async () => {
      for (const [i, at] of moments.entries()) {
        const wait = t0 + at - Date.now();
        if (wait > 0) await sleep(wait);
        faults.push(await target.fault(pick, Date.now() - t0, pauses[i]!));
        selfExits += await target.reviveExited();
      }
    })();
    // Awaited after the traffic; until then a failure (a node that does not come back) must not go unhandled.
    faulting.catch(() => undefined);
    await runTraffic(traffic, target.urls, random, stopAt);
    await faulting;

    // Quiesce: every send answered or refused, then every device at its user's head.
    selfExits += await target.reviveExited();
    const t = traffic;
    if (!(await within(90_000, () => t.pending.size === 0))) problem(`${t.pending.size} sends still unanswered 90 s after the traffic stopped`);
    const logs = new Map<string, any[]>();
    const readAll = async () => {
      for (const u of t.users) logs.set(u.name, await readLog(target.urls, u.devices[0]!.client.sid!));
    };
    await readAll();
    const caughtUp = () => t.users.every((u) => u.devices.every((d) => d.client.syncKey === (logs.get(u.name)!.at(-1)?.seq ?? 0)));
    if (!(await within(30_000, caughtUp))) await readAll(); // a late write (a contact op's retry): read once more

    await within(15_000, caughtUp);
    const status = (d: Device) => {
      const s = d.client.connection;
      const wire = d.user.transport === 'http' ? '' : `; ${d.wire.describe()}`;
      return `${s.state}${s.url ? ` on ${s.url}` : ''}${s.reason ? ` (${s.reason})` : ''}, ${d.client.outbox.length} in the outbox${wire}`;
    };
    const devices = t.users.flatMap((u) => u.devices.map((d) => ({ user: u.name, deviceId: d.deviceId, transport: u.transport, syncKey: d.client.syncKey, entries: d.entries, status: status(d) })));
    const { lost, doubled, diverged, problems: found } = checkRun(logs, devices, t.sends, t.groups);
    for (const p of found) problem(p);
    const logEntries = [...logs.values()].reduce((n, l) => n + l.length, 0);
    for (const s of t.sends) if (s.refused) problem(`refused: ${s.kind} ${s.clientMsgId} from ${s.from} to ${s.to}: ${s.refused.ret} ${s.refused.errMsg}`);

    await closeTraffic(t);
    const storage = await target.stopAndCheck();
    if (storage.integrity !== 'ok' && storage.integrity !== 'n/a') problem(`integrity_check: ${storage.integrity}`);
    for (const d of storage.density) problem(`log density: ${d}`);
    const by = (k: string) => t.sends.filter((s) => s.kind === k || s.transport === k).length;
    const answered = t.sends.filter((s) => s.answer).length;
    const refused = t.sends.filter((s) => s.refused).length;
    const unanswered = t.sends.length - answered - refused;
    return {
      seed: opts.seed,
      mode: opts.mode,
      ok: problems.length === 0,
      durationMs: Date.now() - started,
      faults,
      selfExits,
      sends: {
        total: t.sends.length,
        answered,
        refused,
        unanswered,
        answeredDuplicate: t.sends.filter((s) => s.answer?.duplicate).length,
        // Sent more than once before an answer came (on the wire when the server died, or refused while it was down).
        resent: t.sends.filter((s) => (s.answer?.attempts ?? 0) > 1).length,
        direct: by('direct'),
        group: by('group'),
        image: by('image'),
        tcp: by('tcp'),
        ws: by('ws'),
        http: by('http'),
      },
      ops: t.ops,
      devices: t.users.reduce((n, u) => n + u.devices.length, 0),
      users: t.users.length,
      logEntries,
      lost,
      doubled,
      diverged,
      integrity: storage.integrity,
      densityProblems: storage.density.length,
      problems,
    };
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    if (traffic) await closeTraffic(traffic);
    await target.dispose();
  }
}
