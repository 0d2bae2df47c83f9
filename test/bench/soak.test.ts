// The soak's smoke run (bench/soak/soak.ts, `npm run soak` for the real one): ~15 s of mixed traffic with devices
// coming and going over TCP, WebSocket and long-poll, some vanishing without a word, against a server in the
// `npm start` layout (a core and two gateway processes). No timing assertion: every acknowledged send is in each
// log it belongs to exactly once, the server reaps the vanished devices, and every server process holds as many
// descriptors after the clients left as before they came (± a small margin).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSoak, secondHalfSlopes, slope } from '../../bench/soak/soak.ts';

/** Descriptors a process may hold beyond its start after clients left (a log file reopened, a pooled socket). */
const FD_MARGIN = 3;

test('slope is the least-squares slope', () => {
  assert.equal(slope([]), 0);
  assert.equal(slope([{ x: 1, y: 5 }]), 0);
  assert.equal(slope([{ x: 0, y: 1 }, { x: 1, y: 3 }, { x: 2, y: 5 }]), 2);
  assert.equal(+slope([{ x: 0, y: 0 }, { x: 1, y: 1 }, { x: 2, y: 0 }, { x: 3, y: 1 }]).toFixed(2), 0.2);
});

test('a short soak loses and doubles nothing, reaps vanished devices and gives every descriptor back', async () => {
  const r = await runSoak({
    seconds: 15,
    users: 6,
    workers: 2,
    sampleSeconds: 2,
    bucketSeconds: 10,
    sendGapMs: 300,
    roundSeconds: 5,
    // Idle close after 2.5 × 2 s: the devices that vanish over TCP and WebSocket are closed by the server meanwhile.
    // The range is pinned too, so the SDK's own proposal (27 s) is agreed at 2 s.
    env: { SYNCHAT_HEARTBEAT_MS: '2000', SYNCHAT_HEARTBEAT_MIN_MS: '2000', SYNCHAT_HEARTBEAT_MAX_MS: '2000' },
  });
  assert.deepEqual(r.errors, []);
  assert.equal(r.counts.sendErrors, 0);
  assert.ok(r.counts.sends > 0 && r.counts.groupSends > 0 && r.counts.mediaSends > 0, JSON.stringify(r.counts));
  assert.ok(r.counts.logouts > 0 && r.counts.stops > 0 && r.counts.drops > 0, JSON.stringify(r.counts));
  assert.ok(r.counts.vanished >= 3, JSON.stringify(r.counts));
  assert.ok(r.counts.vanishedClosedByServer > 0, `the server closed none of ${r.counts.vanished} vanished devices`);
  assert.equal(r.check.acked, r.counts.sends);
  assert.equal(r.check.lost, 0, r.check.firstProblem);
  assert.equal(r.check.doubled, 0, r.check.firstProblem);
  for (const [role, start] of Object.entries(r.fds.perProcessStart)) {
    const end = r.fds.perProcessEnd[role]!;
    assert.ok(Math.abs(end - start) <= FD_MARGIN, `${role}: ${start} descriptors before traffic, ${end} after every client left (${JSON.stringify(r.fds.kindsEnd[role])})`);
  }
  // Every process was sampled, its heap read through the inspector.
  assert.equal(r.processes.filter((p) => p.role === 'core' || p.role.startsWith('gateway-')).length, 3);
  for (const p of r.processes.filter((x) => x.role === 'core' || x.role.startsWith('gateway-'))) {
    assert.ok(p.samples.length >= 5 && p.samples.every((s) => s.rssMiB > 0 && s.heapUsedMiB > 0 && s.externalMiB > 0), p.role);
    assert.ok(p.samples.filter((s) => s.heapLiveMiB !== undefined).length >= 2, p.role);
  }
  assert.equal(secondHalfSlopes(r).length, r.processes.length);
});
