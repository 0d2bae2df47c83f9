// The load tool's own bookkeeping: where connections go, how latency is summarised, and that a run against a
// server that delivers everything counts every delivery once (no lost, no duplicated) — against the ws relay
// baseline, which needs no database.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeHistogram, mergeHistograms, newHistogram, recordMs, summarize } from '../../bench/lib/hist.ts';
import { connectDevices, openRun, population, startWorkers } from '../../bench/lib/harness.ts';
import { CONNS_PER_SOURCE_ADDRESS, MAX_SOCKETS_PER_WORKER, sourceAddresses, workersFor } from '../../bench/lib/pool.ts';
import { befriendAll } from '../../bench/lib/setup.ts';
import { devicesOwed, loadStep, type PlanItem } from '../../bench/lib/steps.ts';

test('spreads connections over enough workers and source addresses for the per-process file limit', () => {
  assert.equal(workersFor(10), 2);
  assert.equal(workersFor(100_000), Math.ceil(100_000 / MAX_SOCKETS_PER_WORKER));
  assert.ok(MAX_SOCKETS_PER_WORKER < 20_000);
  const addrs = sourceAddresses(100_000);
  assert.equal(addrs.length, Math.ceil(100_000 / CONNS_PER_SOURCE_ADDRESS));
  assert.equal(addrs[0], '127.0.0.2');
  assert.ok(addrs.every((a) => /^127\.0\.0\.\d+$/.test(a) && Number(a.split('.')[3]) <= 254));
});

test('merges worker histograms into one latency summary', () => {
  const a = newHistogram();
  const b = newHistogram();
  for (let i = 1; i <= 900; i++) recordMs(a, 1);
  for (let i = 1; i <= 100; i++) recordMs(b, 100);
  const s = summarize(mergeHistograms([encodeHistogram(a), encodeHistogram(b)]));
  assert.equal(s.count, 1000);
  assert.ok(Math.abs(s.p50Ms - 1) < 0.01);
  assert.ok(Math.abs(s.p99Ms - 100) < 0.1);
  assert.ok(Math.abs(s.maxMs - 100) < 0.1);
});

test('counts every acknowledged message once at its recipient in an open-loop step', { timeout: 60_000 }, async () => {
  const o = { transport: 'ws', 'client-workers': '2' };
  const run = await openRun(o, 'baseline');
  try {
    const users = await population(run, 'lt_', 8);
    await befriendAll(run.target.endpoint.httpUrl, [0, 2, 4, 6].map((i) => [users[i]!, users[i + 1]!] as [(typeof users)[0], (typeof users)[0]]));
    const specs = users.map((u, i) => ({ id: i, username: u.username, sid: u.sids[0]! }));
    await startWorkers(run, o, specs.length);
    const c = await connectDevices(run, specs, 8);
    assert.equal(c.connected, 8);
    const plans: PlanItem[][] = [[], []];
    specs.forEach((s, i) => plans[i % 2]!.push({ connId: s.id, to: users[i ^ 1]!.username }));
    const step = await loadStep(run, plans, 200, { seconds: 1, p99LimitMs: 10_000, contentBytes: 32, recipientDevices: devicesOwed(specs, (item) => [item.to]), label: 'test' });
    assert.equal(step.errors, 0);
    assert.ok(step.expectedDeliveries >= 190, `expected ≈ 200 deliveries, got ${step.expectedDeliveries}`);
    assert.equal(step.deliveries, step.expectedDeliveries);
    assert.equal(step.lost, 0);
    assert.equal(step.duplicates, 0);
    assert.equal(step.latency.count, step.deliveries);
  } finally {
    await run.close();
  }
});
