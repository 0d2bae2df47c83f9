/**
 * `mixed`: a realistic day compressed. `--users` users with `--devices` devices on average (some one, some two),
 * `--online` of the devices connected; each user has two contacts (a ring) and the first `--group-members`
 * users share groups of 50. Per simulated minute `--active` of the users send one message (half of them into
 * their group when they have one, `--group-share`); `--minute-ms` compresses a minute (default 1 s: 60×).
 * Media is measured apart (`media-upload`). Reports delivery latency, deliveries, lost/duplicates, and server
 * CPU and memory per online device.
 *
 *   npm run bench -- mixed [--users 2000] [--devices 1.6] [--online 0.3] [--active 0.01] [--minute-ms 1000]
 *                          [--group-share 0.5] [--seconds 30] [--transport tcp|ws|longpoll] [--json FILE]
 */
import { befriendAll, createGroup, pooled, runTag, type SimUser } from '../lib/setup.ts';
import { connectDevices, openRun, population, startWorkers, usage } from '../lib/harness.ts';
import { call, parseArgs } from '../lib/proc.ts';
import { printBlock, writeResult } from '../lib/result.ts';
import { devicesOwed, loadStep, type PlanItem } from '../lib/steps.ts';
import { withProgress } from '../lib/progress.ts';
import type { DeviceSpec } from '../lib/pool.ts';

const DEFAULTS = { users: '2000', devices: '1.6', online: '0.3', active: '0.01', 'minute-ms': '1000', 'group-share': '0.5', 'group-members': '500', seconds: '30', transport: 'tcp', 'server-workers': '2', json: '' };

/** A deterministic pseudo-random number in [0, 1) for index i (mulberry32), so runs are comparable. */
function rand(i: number): number {
  let t = (i + 0x6d2b79f5) | 0;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** Runs the scenario. */
export async function run(argv: string[]): Promise<void> {
  const o = parseArgs(argv, DEFAULTS);
  const run = await openRun(o, 'synchat');
  try {
    const U = Number(o.users);
    const extra = Number(o.devices) - 1; // share of users with a second device
    // Users with two devices log in twice (password hashing is deliberately slow: that is most of the setup).
    const users = await population(run, `mx${runTag()}_`, U, 1);
    const twoDevice = users.filter((_, i) => rand(i * 7 + 1) < extra);
    let logged = 0;
    await withProgress('second devices', twoDevice.length, () => ({ done: logged }), () =>
      pooled(twoDevice, 16, async (u) => {
        const l = await call(run.target.endpoint.httpUrl, '/api/login', { username: u.username, password: 'bench-password', deviceId: 'bench-1' });
        if (l.ret !== 0) throw new Error(`login ${u.username}: ret ${l.ret}`);
        u.sids.push(l.sid);
        logged++;
      }),
    );
    let done = 0;
    const ring = users.map((u, i) => [u, users[(i + 1) % U]!] as [SimUser, SimUser]);
    await withProgress('contacts (ring)', ring.length, () => ({ done }), () => befriendAll(run.target.endpoint.httpUrl, ring, (n) => (done = n)));
    // Groups of 50 among the first `group-members` users; user g*50 creates group g (its ring neighbour is a contact,
    // the others are befriended by the creator first).
    const groupOf = new Map<string, string>();
    const gm = Math.min(Number(o['group-members']), U);
    const groupMembers = new Map<string, SimUser[]>();
    const hubPairs: [SimUser, SimUser][] = [];
    for (let g = 0; g * 50 < gm; g++) {
      const members = users.slice(g * 50, Math.min(gm, g * 50 + 50));
      for (const m of members.slice(2)) hubPairs.push([members[0]!, m]);
    }
    done = 0;
    await withProgress('group contacts', hubPairs.length, () => ({ done }), () => befriendAll(run.target.endpoint.httpUrl, hubPairs, (n) => (done = n)));
    for (let g = 0; g * 50 < gm; g++) {
      const members = users.slice(g * 50, Math.min(gm, g * 50 + 50));
      const id = await createGroup(run.target.endpoint.httpUrl, members[0]!, `mixed ${g}`, members.slice(1));
      groupMembers.set(id, members);
      for (const m of members) groupOf.set(m.username, id);
    }
    // Online devices.
    const specs: DeviceSpec[] = [];
    users.forEach((u, i) =>
      u.sids.forEach((sid, d) => {
        if (rand(i * 13 + d * 101 + 5) < Number(o.online)) {
          specs.push({ id: specs.length, username: u.username, sid });
        }
      }),
    );
    const totalDevices = users.reduce((a, u) => a + u.sids.length, 0);
    const pool = await startWorkers(run, o, specs.length);
    const c = await connectDevices(run, specs, 200);
    if (c.failed) throw new Error(`${c.failed} devices failed to connect: ${c.firstError}`);
    const W = pool.children.length;
    // Senders: every online device takes turns; the open-loop schedule cycles through them.
    const plans: PlanItem[][] = Array.from({ length: W }, () => []);
    specs.forEach((s, i) => {
      const u = s.username;
      const idx = users.findIndex((x) => x.username === u);
      const group = groupOf.get(u);
      const to = group && rand(i * 3 + 11) < Number(o['group-share']) ? group : users[(idx + 1) % U]!.username;
      plans[i % W]!.push({ connId: s.id, to });
    });
    // Owed: every online device of the peer or of every group member, and the sender's other online devices.
    const groupNames = new Map([...groupMembers].map(([id, members]) => [id, members.map((m) => m.username)]));
    const recipientDevices = devicesOwed(specs, (item) => groupNames.get(item.to) ?? [item.to]);
    const ratePerSec = Math.max(1, Math.round((U * Number(o.active) * 1000) / Number(o['minute-ms'])));
    const step = await loadStep(run, plans, ratePerSec, { seconds: Number(o.seconds), p99LimitMs: 200, contentBytes: 120, recipientDevices, label: 'mixed' });
    const result = {
      target: run.target.kind,
      transport: run.transport,
      users: U,
      devices: totalDevices,
      onlineDevices: c.connected,
      groups: groupMembers.size,
      msgsPerSec: ratePerSec,
      compression: +(60_000 / Number(o['minute-ms'])).toFixed(1),
      step,
      serverRssMiB: step.serverRssMiB,
      serverKiBPerOnlineDevice: +((step.serverRssMiB * 1024) / c.connected).toFixed(1),
      targetSettings: run.target.settings,
      usage: usage(run),
    };
    printBlock(`mixed · ${run.transport}`, {
      users: U,
      devices: totalDevices,
      onlineDevices: c.connected,
      msgsPerSec: ratePerSec,
      deliveredPerSec: step.deliveredPerSec,
      latency: step.latency,
      lost: step.lost,
      duplicates: step.duplicates,
      serverCores: step.serverCores,
      serverRssMiB: step.serverRssMiB,
    });
    writeResult(o.json || undefined, 'mixed', o, { runs: [result] });
  } finally {
    await run.close();
  }
}
