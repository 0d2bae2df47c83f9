/**
 * `idle`: N authenticated connections that only heartbeat. Measures the connect+AUTH rate with existing
 * sessions, the server's memory per connection (RSS of the primary and every gateway, before and after), and the
 * kernel's share apart (slab growth over both ends of every loopback socket). Runs the `ws` relay baseline
 * after Synchat unless `--baseline false`.
 *
 *   npm run bench -- idle [--connections 10000] [--users 1000] [--devices auto] [--transport tcp|ws|longpoll]
 *                         [--server-workers 2] [--hold 5] [--password-log2n 10] [--baseline true] [--json FILE]
 *
 * Every connection is its own device with its own session: each of `--users` users logs in
 * ⌈connections / users⌉ devices (`--devices N` instead fixes the devices per user and registers
 * ⌈connections / N⌉ users). The scrypt cost the bench server uses for those logins is printed and recorded in
 * `targetSettings`.
 */
import { bottleneckNote, printBlock, writeResult } from '../lib/result.ts';
import { connectDevices, kernelSlabBytes, meanCores, openRun, population, settle, startWorkers, usage, type Run } from '../lib/harness.ts';
import { parseArgs } from '../lib/proc.ts';
import { runTag } from '../lib/setup.ts';
import type { DeviceSpec } from '../lib/pool.ts';

const DEFAULTS = { connections: '10000', users: '1000', devices: 'auto', transport: 'tcp', 'server-workers': '2', hold: '5', concurrency: '200', baseline: 'true', json: '' };

async function measure(o: Record<string, string>, kind: 'synchat' | 'baseline'): Promise<Record<string, unknown>> {
  const connections = Number(o.connections);
  const run: Run = await openRun(o, kind);
  try {
    const devices = o.devices === 'auto' ? Math.ceil(connections / Number(o.users)) : Number(o.devices);
    const userCount = o.devices === 'auto' ? Number(o.users) : Math.ceil(connections / devices);
    const users = await population(run, `idle${runTag()}_`, userCount, devices);
    // Connection i is device ⌊i / users⌋ of user i mod users: one session each, never shared.
    const specs: DeviceSpec[] = Array.from({ length: connections }, (_, i) => {
      const u = users[i % users.length]!;
      return { id: i, username: u.username, sid: u.sids[Math.floor(i / users.length)]! };
    });
    if (new Set(specs.map((s) => s.sid)).size !== connections) throw new Error('idle: two connections share a session');
    await startWorkers(run, o, connections);
    await settle(2000);
    const before = run.serverMon.sample();
    const slab0 = kernelSlabBytes();
    const tConnect = before.t;
    const c = await connectDevices(run, specs, Number(o.concurrency));
    const tConnected = run.serverMon.sample().t;
    await settle(Number(o.hold) * 1000);
    const after = run.serverMon.sample();
    const slab1 = kernelSlabBytes();
    const clientAfter = run.clientMon.sample();
    const serverCores = meanCores(run.serverMon.samples, tConnect, tConnected);
    const clientCores = meanCores(run.clientMon.samples, tConnect, tConnected);
    const perConnBytes = c.connected ? ((after.rssMiB - before.rssMiB) * 2 ** 20) / c.connected : 0;
    const result = {
      target: run.target.kind,
      transport: run.transport,
      connections: c.connected,
      users: users.length,
      devicesPerUser: devices,
      sessions: new Set(specs.map((s) => s.sid)).size,
      failed: c.failed,
      firstError: c.firstError,
      connectSeconds: +(c.elapsedMs / 1000).toFixed(2),
      authsPerSec: c.perSecond,
      authLatency: c.auth,
      serverRssBeforeMiB: before.rssMiB,
      serverRssAfterMiB: after.rssMiB,
      serverBytesPerConn: Math.round(perConnBytes),
      serverKiBPerConn: +(perConnBytes / 1024).toFixed(2),
      // Both ends of every connection live in this kernel (loopback): halve the slab growth per socket.
      // Slab is machine-wide: other processes' churn can swamp it (null when it shrank).
      kernelBytesPerSocket: c.connected && slab1 > slab0 ? Math.round((slab1 - slab0) / (2 * c.connected)) : null,
      clientRssMiB: clientAfter.rssMiB,
      serverCoresWhileConnecting: serverCores,
      clientCoresWhileConnecting: clientCores,
      bottleneck: bottleneckNote(clientCores, serverCores),
      serverProcesses: after.processes,
      targetSettings: run.target.settings,
      usage: usage(run),
    };
    const { usage: _u, ...shown } = result;
    printBlock(`idle · ${kind} · ${run.transport}`, shown);
    return result;
  } finally {
    await run.close();
  }
}

/** Runs the scenario. */
export async function run(argv: string[]): Promise<void> {
  const o = parseArgs(argv, DEFAULTS);
  const runs = [await measure(o, 'synchat')];
  if (o.baseline === 'true' && !o.url) runs.push(await measure({ ...o, transport: 'ws' }, 'baseline'));
  const [s, b] = runs as any[];
  const ratios = b ? { memoryPerConnVsBaseline: +(s.serverBytesPerConn / Math.max(1, b.serverBytesPerConn)).toFixed(2), authRateVsBaseline: +(s.authsPerSec / Math.max(1, b.authsPerSec)).toFixed(2) } : {};
  if (b) printBlock('idle · Synchat / baseline', ratios);
  writeResult(o.json || undefined, 'idle', o, { runs, ratios });
}
