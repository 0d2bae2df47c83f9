// The dashboard's live capacity estimate (src/ops/live-capacity.ts) against cases computed by hand in the comments.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { liveCapacity, meanHeartbeatSec, rateBetween, type LiveAssumptions, type RateSample } from '../../src/ops/live-capacity.ts';
import type { NodeSnapshot, ProcessSnapshot } from '../../src/ops/snapshot.ts';

function proc(pid: number, cpuSeconds: number, rssBytes: number, tcp = 0, ws = 0, parkedPolls = 0): ProcessSnapshot {
  return { pid, role: 'single', rssBytes, heapUsedBytes: 0, eventLoopDelayP99Ms: 0, cpuSeconds, connections: { tcp, ws }, parkedPolls, outboundBytes: 0 };
}

function snap(at: number, processes: ProcessSnapshot[], totals: NodeSnapshot['totals'], over: Partial<NodeSnapshot> = {}): NodeSnapshot {
  return {
    nodeId: 'n1',
    at,
    startedAt: 0,
    isDraining: false,
    processes,
    usersOnline: 0,
    totals,
    latencyMs: { sendToCommitP50: 0, sendToCommitP99: 0, commitToDeliveryP99: 0, fsyncP99: 0 },
    heartbeats: {},
    ...over,
  };
}

// The capacity test's workload (test/bench/capacity.test.ts): per user at peak 0.002 msgs/s, 0.012 appends/s,
// 0.013 deliveries/s and 1 connection.
const ASSUMED: LiveAssumptions = {
  workload: { users: 0, online: 0.5, devices: 2, msgsPerUserDay: 86.4, peak: 2, groupShare: 0.5, groupSize: 10, heartbeatSec: 20 },
  node: { cores: 2, memBytes: 2 ** 30, utilisation: 0.5 },
  kernelBytesPerSocket: 4000,
  maxAppendsPerSecPerWriter: 1000,
  // Half the costs the samples below are made of: the live fit scales this split by 2.
  fallback: { cpuPerSend: 0.005, cpuPerAppend: 0.0005, cpuPerDelivery: 0.001, bytesPerConn: 20_000 },
};

/**
 * Six quiet samples (0.1 cores, 100 connections), then twelve whose cores are exactly 0.1 + 0.01·sends/s +
 * 0.001·appends/s + 0.002·deliveries/s, with rates that vary independently; RSS is exactly 50 MiB + 8000 B per
 * connection throughout (100 → 400 connections).
 */
function samples(): RateSample[] {
  const quiet = Array.from({ length: 6 }, (_, i) => ({
    at: (i - 6) * 1000,
    cores: 0.1,
    coresByPid: {},
    sendsPerSec: 0,
    appendsPerSec: 0,
    deliveriesPerSec: 0,
    connections: 100,
    rssBytes: 50 * 2 ** 20 + 8000 * 100,
  }));
  return [...quiet, ...Array.from({ length: 12 }, (_, i) => {
    const M = i + 1;
    const A = ((i % 3) + 1) * 5;
    const D = ((i % 4) + 1) * 7;
    const connections = 100 + Math.round((300 * i) / 11);
    return {
      at: i * 1000,
      cores: 0.1 + 0.01 * M + 0.001 * A + 0.002 * D,
      coresByPid: {},
      sendsPerSec: M,
      appendsPerSec: A,
      deliveriesPerSec: D,
      connections,
      rssBytes: 50 * 2 ** 20 + 8000 * connections,
    };
  })];
}

test('scales the assumed CPU costs to the load above the quiet seconds, fits memory per connection, and names the resource that runs out first', () => {
  const latest = snap(11_000, [proc(1, 0, 50 * 2 ** 20 + 8000 * 400, 300, 100)], { sends: 0, appends: 0, deliveries: 0, batches: 0 });
  const r = liveCapacity(samples(), latest, ASSUMED, true);
  assert.equal(r.costs.cpuSource, 'live');
  assert.equal(r.costs.memorySource, 'live');
  const near = (x: number, y: number) => assert.ok(Math.abs(x - y) < 1e-6 * Math.max(1, Math.abs(y)), `${x} ≉ ${y}`);
  near(r.costs.idleCores, 0.1);
  near(r.costs.cpuPerSend, 0.01);
  near(r.costs.cpuPerAppend, 0.001);
  near(r.costs.cpuPerDelivery, 0.002);
  near(r.costs.bytesPerConn, 8000);
  // Now: the last ten samples' cores average 0.2233 and their appends 10.5/s; usable: 1 core, 512 MiB, 500 appends/s.
  near(r.now.busyCores, 0.2233);
  // Per message now: the last ten average 7.5 sends, 10.5 appends and 18.9 deliveries a second:
  // (7.5 × 0.01 + 10.5 × 0.001 + 18.9 × 0.002) ÷ 7.5 = 0.1233 ÷ 7.5.
  near(r.costs.cpuPerMessageNow, 0.1233 / 7.5);
  near(r.loads.cpu, 0.2233);
  near(r.loads.writer!, 10.5 / 500);
  // Memory: (50 MiB + 8000 × 400 + 4000 × 400) ÷ 512 MiB = 57,228,800 ÷ 536,870,912.
  near(r.loads.memory, 57_228_800 / 536_870_912);
  // One user: 0.002 × 0.01 + 0.012 × 0.001 + 0.013 × 0.002 = 5.8e-5 cores of 1; 12,000 B of 512 MiB; 0.012 of 500 appends/s.
  near(r.perUser.cpu, 5.8e-5);
  near(r.perUser.memory, 12_000 / 536_870_912);
  near(r.perUser.writer!, 0.012 / 500);
  // Room: CPU (1 − 0.2233) ÷ 5.8e-5 = 13,391.4; memory (536,870,912 − 57,228,800) ÷ 12,000 = 39,970.2;
  // writer (1 − 0.021) ÷ 2.4e-5 = 40,791.7. CPU runs out first.
  near(r.moreUsersBy.cpu, 0.7767 / 5.8e-5);
  near(r.moreUsersBy.memory, 479_642_112 / 12_000);
  near(r.moreUsersBy.writer!, 0.979 / 2.4e-5);
  assert.equal(r.binding, 'cpu');
  assert.equal(r.moreUsers, 13_391);
});

test('uses the assumed costs while the window has no sends and the connections did not move', () => {
  const quiet = samples().map((s) => ({ ...s, sendsPerSec: 0, appendsPerSec: 0, deliveriesPerSec: 0, cores: 0.05, connections: 10, rssBytes: 2 ** 27 }));
  // Nine seconds with sends are not enough either.
  for (const s of quiet.slice(-9)) s.sendsPerSec = 5;
  const latest = snap(11_000, [proc(1, 0, 2 ** 27, 10)], { sends: 0, appends: 0, deliveries: 0, batches: 0 });
  const r = liveCapacity(quiet, latest, ASSUMED, false);
  assert.equal(r.costs.cpuSource, 'assumed');
  assert.equal(r.costs.memorySource, 'assumed');
  assert.equal(r.costs.cpuPerSend, 0.005);
  assert.equal(r.costs.bytesPerConn, 20_000);
  // No writer on PostgreSQL. CPU: one user 0.002 × 0.005 + 0.012 × 0.0005 + 0.013 × 0.001 = 2.9e-5 of 1 core;
  // (1 − 0.05) ÷ 2.9e-5 = 32,758.6. Memory: one user 24,000 B; (512 MiB − 128 MiB − 40,000 B) ÷ 24,000 = 16,775.5.
  // Memory runs out first.
  assert.equal(r.loads.writer, undefined);
  assert.ok(Math.abs(r.moreUsersBy.cpu - 0.95 / 2.9e-5) < 1e-6);
  assert.equal(r.binding, 'memory');
  assert.equal(r.moreUsers, Math.floor((2 ** 29 - 2 ** 27 - 40_000) / 24_000));
});

test('without a quiet second, fits costs that hold the idle cost: an upper bound', () => {
  // Steady traffic, 10 sends/s at 0.1 (idle) + 0.01 × 10 = 0.2 cores: the idle part cannot be told apart, so the
  // sends carry it (appends and deliveries are left at 0): the assumed 0.005 × 10 = 0.05 cores scale by 4.
  const steady = Array.from({ length: 12 }, (_, i) => ({ at: i * 1000, cores: 0.2, coresByPid: {}, sendsPerSec: 10, appendsPerSec: 0, deliveriesPerSec: 0, connections: 10, rssBytes: 2 ** 27 }));
  const latest = snap(11_000, [proc(1, 0, 2 ** 27, 10)], { sends: 0, appends: 0, deliveries: 0, batches: 0 });
  const r = liveCapacity(steady, latest, ASSUMED, false);
  assert.equal(r.costs.cpuSource, 'live-bound');
  assert.equal(r.costs.idleCores, 0);
  // 0.2 cores ÷ 10 sends/s = 0.02 core·s per send.
  assert.ok(Math.abs(r.costs.cpuPerSend - 0.02) < 1e-12);
});

test('takes rates between two snapshots of one run, skipping a process without a baseline', () => {
  const a = snap(10_000, [proc(1, 10, 100), proc(2, 4, 100)], { sends: 100, appends: 200, deliveries: 300, batches: 10 });
  // Two seconds later: pid 1 used 1 CPU second, pid 2 0.5, pid 3 is new (a replaced gateway).
  const b = snap(12_000, [proc(1, 11, 150, 2, 1, 1), proc(2, 4.5, 100, 3), proc(3, 7, 60)], { sends: 140, appends: 260, deliveries: 420, batches: 12 });
  const r = rateBetween(a, b)!;
  assert.deepEqual(r.coresByPid, { 1: 0.5, 2: 0.25 });
  assert.equal(r.cores, 0.75);
  assert.equal(r.sendsPerSec, 20);
  assert.equal(r.appendsPerSec, 30);
  assert.equal(r.deliveriesPerSec, 60);
  assert.equal(r.connections, 7);
  assert.equal(r.rssBytes, 310);
  // A restarted node (its counters began again), another node, or no time passed: no rate.
  assert.equal(rateBetween(a, { ...b, startedAt: 1 }), undefined);
  assert.equal(rateBetween(a, { ...b, nodeId: 'n2' }), undefined);
  assert.equal(rateBetween(a, { ...b, at: a.at }), undefined);
});

test('averages the agreed heartbeat periods by connection', () => {
  const s = snap(0, [], { sends: 0, appends: 0, deliveries: 0, batches: 0 }, { heartbeats: { '27': 60, '300': 40 } });
  // 100 connections ÷ (60/27 + 40/300) heartbeats/s = 100 ÷ 2.3556 = 42.45 s
  assert.ok(Math.abs(meanHeartbeatSec(s)! - 100 / (60 / 27 + 40 / 300)) < 1e-9);
  assert.equal(meanHeartbeatSec({ ...s, heartbeats: {} }), undefined);
});
