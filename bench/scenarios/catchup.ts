/**
 * `catchup`: a device is offline while `--entries` messages arrive for its user; then it connects with its old
 * key and resyncs. Measures the time from connect to current, and the bytes it received doing so (bytes per
 * entry), over the chosen transport. The entries are written by another device of a contact as fast as the
 * server takes them (closed loop, `--window` sends in flight).
 *
 *   npm run bench -- catchup [--entries 100000] [--window 256] [--transport tcp|ws|longpoll] [--server-workers 2] [--json FILE]
 */
import { befriend, runTag } from '../lib/setup.ts';
import { connectDevices, deliveryStats, openRun, population, settle, startWorkers, usage } from '../lib/harness.ts';
import { parseArgs } from '../lib/proc.ts';
import { printBlock, writeResult } from '../lib/result.ts';
import { withProgress } from '../lib/progress.ts';

const DEFAULTS = { entries: '100000', window: '256', transport: 'tcp', 'server-workers': '2', json: '' };

/** Runs the scenario. */
export async function run(argv: string[]): Promise<void> {
  const o = parseArgs(argv, DEFAULTS);
  const run = await openRun(o, 'synchat');
  try {
    const entries = Number(o.entries);
    const [writer, reader] = await population(run, `cu${runTag()}_`, 2);
    await befriend(run.target.endpoint.httpUrl, writer!, reader!);
    const pool = await startWorkers(run, { ...o, 'client-workers': '2' }, 2);
    // Worker 0 holds the writer; the reader (worker 1) connects later.
    const c = await connectDevices(run, [{ id: 0, username: writer!.username, sid: writer!.sids[0]! }], 1, 'writer connect');
    if (c.failed) throw new Error(`writer failed to connect: ${c.firstError}`);
    // Learn the reader's key before the backlog: connect it once, then drop it.
    await pool.request(1, { cmd: 'connect', conns: [{ id: 1, username: reader!.username, sid: reader!.sids[0]! }], concurrency: 1 });
    await settle(300);
    const [before] = await pool.request(1, { cmd: 'heads' });
    await pool.request(1, { cmd: 'drop' });
    let acked = 0;
    pool.onProgress = (_w, d) => (acked = Number(d.acked ?? acked));
    const t0 = performance.now();
    const w = await withProgress('writing backlog', entries, () => ({ done: acked }), () => pool.request(0, { cmd: 'burst', connId: 0, to: reader!.username, count: entries, window: Number(o.window) }));
    const writeSeconds = (performance.now() - t0) / 1000;
    if (w.errors) throw new Error(`backlog: ${w.errors} sends failed: ${w.firstError}`);
    await deliveryStats(run, true);
    const cpu0 = run.serverMon.cpuSecondsSinceStart();
    const bytes0 = (await pool.request(1, { cmd: 'stats', reset: false })).bytesIn;
    const t1 = performance.now();
    let head = 0;
    let key = 0;
    const rc = await withProgress('resync', entries, () => ({ done: Math.max(0, key - before.syncKey) }), async () => {
      const r = await pool.request(1, { cmd: 'reconnect', concurrency: 1, timeoutMs: 300_000 });
      const [h] = await pool.request(1, { cmd: 'heads' });
      head = h.knownHead;
      key = h.syncKey;
      return r;
    });
    const resyncSeconds = (performance.now() - t1) / 1000;
    const stats = await deliveryStats(run, false);
    const bytes = (await pool.request(1, { cmd: 'stats', reset: false })).bytesIn - bytes0;
    const result = {
      target: run.target.kind,
      transport: run.transport,
      entries,
      writeSeconds: +writeSeconds.toFixed(2),
      writePerSec: Math.round(entries / writeSeconds),
      reconnected: rc.reconnected,
      keyBefore: before.syncKey,
      head,
      keyAfter: key,
      isCurrent: key >= head && rc.current === 1,
      messagesReceived: stats.uniqueDeliveries,
      duplicates: stats.duplicates,
      resyncSeconds: +resyncSeconds.toFixed(3),
      entriesPerSec: Math.round((key - before.syncKey) / resyncSeconds),
      bytes,
      bytesPerEntry: +(bytes / Math.max(1, key - before.syncKey)).toFixed(1),
      serverCpuSecondsDuringResync: +(run.serverMon.cpuSecondsSinceStart() - cpu0).toFixed(2),
      targetSettings: run.target.settings,
      usage: usage(run),
    };
    const { usage: _u, ...shown } = result;
    printBlock(`catchup · ${run.transport}`, shown);
    writeResult(o.json || undefined, 'catchup', o, { runs: [result] });
  } finally {
    await run.close();
  }
}
