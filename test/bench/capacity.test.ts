// The capacity model's arithmetic (bench/lib/capacity-model.ts) against cases computed by hand in the comments.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fitCpu, heartbeatsPerConnSec, nnls, plan, type ClusterCosts, type Costs } from '../../bench/lib/capacity-model.ts';

const COSTS: Costs = {
  bytesPerConn: 6000,
  kernelBytesPerSocket: 4000,
  baseBytes: 100 * 2 ** 20,
  cpuPerSend: 0.01,
  cpuPerAppend: 0.001,
  cpuPerDelivery: 0.002,
  bytesPerDelivery: 200,
  maxAppendsPerSecPerWriter: 1000,
  sources: {},
};
const NODE = { cores: 2, memBytes: 2 ** 30, utilisation: 0.5 };
const WORKLOAD = { users: 1000, online: 0.5, devices: 2, msgsPerUserDay: 86.4, peak: 2, groupShare: 0.5, groupSize: 10, heartbeatSec: 20 };

test('computes connections, rates, cores, memory, storage and bandwidth for a hand-computed workload', () => {
  const p = plan(WORKLOAD, COSTS, NODE);
  // 1000 users × 2 devices × 0.5 online
  assert.equal(p.connections, 1000);
  // 1000 × 86.4 / 86400 = 1 msg/s average, × 2 at peak
  assert.equal(p.msgsPerSecPeak, 2);
  // appends per message 0.5 × 2 + 0.5 × 10 = 6 → 12/s
  assert.equal(p.appendsPerSec, 12);
  // deliveries per message: 0.5 × (2 × 0.5) + 0.5 × 9 × (2 × 0.5) + (1 + 1 × 0.5) = 0.5 + 4.5 + 1.5 = 6.5 → 13/s
  assert.equal(p.deliveriesPerSec, 13);
  // busy cores 2 × 0.01 + 12 × 0.001 + 13 × 0.002 = 0.058; at 50 % utilisation 0.116
  assert.ok(Math.abs(p.cores - 0.116) < 1e-12);
  assert.equal(p.nodesByCpu, 1);
  // memory: 1000 × 10,000 B + 1 node × 100 MiB
  assert.equal(p.memBytes, 1e7 + 100 * 2 ** 20);
  assert.equal(p.nodesByMemory, 1);
  assert.equal(p.nodes, 1);
  // rows: 12 appends + 2 message rows; 12 ≤ 1000 × 0.5 so one writer suffices
  assert.equal(p.storageWritesPerSec, 14);
  assert.equal(p.isSingleWriterEnough, true);
  // Redis PUBLISHes: one per log append (news per user, a fan-out copied per member in Redis) = 12
  assert.equal(p.busPublishesPerSec, 12);
  // (13 × 200 B + 1000 / 20 heartbeats × 32 B) × 8 = 33,600 bit/s
  assert.equal(p.bandwidthBitsPerSec, 33_600);
});

test('takes a heartbeat mix: the rates of web and mobile devices add, weighted by their shares', () => {
  const p = plan({ ...WORKLOAD, heartbeatMix: [{ sec: 27, share: 0.6 }, { sec: 300, share: 0.4 }] }, COSTS, NODE);
  // 1000 connections × (0.6 ÷ 27 + 0.4 ÷ 300) = 1000 × (0.022222… + 0.001333…) = 23.5555… heartbeats/s
  const heartbeats = p.steps.find((s) => s.what === 'heartbeats/s')!;
  assert.ok(Math.abs(heartbeats.value - 23.555_555_555_6) < 1e-9, String(heartbeats.value));
  assert.match(heartbeats.formula, /1,000 × \(0\.6 ÷ 27 \+ 0\.4 ÷ 300\)/);
  // (13 × 200 B + 23.5555… × 32 B) × 8 = (2600 + 753.777…) × 8 = 26,830.222… bit/s
  assert.ok(Math.abs(p.bandwidthBitsPerSec - 26_830.222_222_2) < 1e-6, String(p.bandwidthBitsPerSec));
  // Not the mean period: (27 + 300) ÷ 2 = 163.5 s would give 1000 ÷ 163.5 = 6.1 heartbeats/s.
  assert.equal(heartbeatsPerConnSec({ heartbeatSec: 30 }).rate, 1 / 30);
});

test('adds the CPU of heartbeats when it is known', () => {
  const p = plan(WORKLOAD, { ...COSTS, cpuPerHeartbeat: 1e-4 }, NODE);
  // busy cores 0.058 (above) + 1000 ÷ 20 heartbeats/s × 1e-4 = 0.058 + 0.005 = 0.063; at 50 % utilisation 0.126
  assert.ok(Math.abs(p.cores - 0.126) < 1e-12, String(p.cores));
  assert.match(p.steps.find((s) => s.what === 'busy cores at peak')!.formula, /heartbeats\/s × 1\.00e-4/);
});

test('scales to a thousand times the users and names the resource that needs more nodes', () => {
  const p = plan({ ...WORKLOAD, users: 1_000_000 }, COSTS, NODE);
  assert.equal(p.connections, 1_000_000);
  // busy cores 58 → 116 planned → ⌈116 / 2⌉ = 58 nodes by CPU
  assert.equal(p.nodesByCpu, 58);
  // 1e10 B of connections ÷ (1 GiB × 0.5 − 100 MiB = 432,013,312 B) → ⌈23.15⌉ = 24 nodes by memory
  assert.equal(p.nodesByMemory, 24);
  assert.equal(p.nodes, 58);
  assert.equal(p.binding, 'cpu');
  assert.equal(p.memBytes, 1e10 + 58 * 100 * 2 ** 20);
  // loads: CPU 116 ÷ 2 = 58 nodes, memory 1e10 ÷ 432,013,312 ≈ 23.15, writer 12,000 ÷ 500 = 24
  assert.equal(p.loads.cpu, 58);
  assert.ok(Math.abs(p.loads.memory - 1e10 / 432_013_312) < 1e-9);
  assert.equal(p.loads.writer, 24);
  // 12,000 appends/s > 1000 × 0.5: one SQLite writer is not enough
  assert.equal(p.isSingleWriterEnough, false);
});

test('names the single writer as the binding resource when appends outgrow it before CPU and memory', () => {
  // 12 appends/s against a writer measured at 10/s × 0.5 → load 2.4; CPU 0.058 and memory 0.023 node
  const p = plan(WORKLOAD, { ...COSTS, maxAppendsPerSecPerWriter: 10 }, NODE);
  assert.equal(p.binding, 'writer');
  assert.equal(p.loads.writer, 2.4);
  assert.equal(p.isSingleWriterEnough, false);
});

const CLUSTER: ClusterCosts = {
  cpuPerSend: 0.02,
  cpuPerAppend: 0.002,
  cpuPerDelivery: 0.004,
  pgCpuPerMsg: 0.001,
  pgCpuPerAppend: 0.0005,
  pgWalBytesPerMsg: 1000,
  pgWalBytesPerAppend: 500,
  pgMaxAppendsPerSec: 1000,
  redisCpuPerMsg: 0.0001,
  redisCpuPerAppend: 0.00005,
};

test('stays on one SQLite node while it is enough, even when several-node costs are known', () => {
  const p = plan(WORKLOAD, { ...COSTS, cluster: CLUSTER }, NODE);
  assert.equal(p.nodes, 1);
  assert.equal(p.cluster, undefined);
  assert.equal(p.loads.postgres, undefined);
});

test('lays out nodes, PostgreSQL primaries and Redis instances with the several-node costs once one node is not enough', () => {
  const p = plan({ ...WORKLOAD, users: 1_000_000 }, { ...COSTS, cluster: CLUSTER }, NODE, { pgCores: 4 });
  // 2,000 msgs/s, 12,000 appends/s, 13,000 deliveries/s (the thousandfold case above)
  // node CPU: 2,000 × 0.02 + 12,000 × 0.002 + 13,000 × 0.004 = 40 + 24 + 52 = 116 busy → 232 at 50 % → 116 nodes
  assert.equal(p.cores, 232);
  assert.equal(p.nodesByCpu, 116);
  assert.equal(p.nodes, 116);
  assert.equal(p.memBytes, 1e10 + 116 * 100 * 2 ** 20);
  const c = p.cluster!;
  // PostgreSQL: 2,000 × 0.001 + 12,000 × 0.0005 = 8 cores; ÷ (4 × 0.5) = 4 primaries; WAL 2,000 × 1,000 B + 12,000 × 500 B
  assert.ok(Math.abs(c.pgBusyCores - 8) < 1e-9);
  assert.equal(c.pgPrimaries, 4);
  assert.equal(c.pgWalBytesPerSec, 8_000_000);
  // Redis: 2,000 × 0.0001 + 12,000 × 0.00005 = 0.8 cores; ÷ 0.5 = 1.6 → 2 instances of one core
  assert.ok(Math.abs(c.redisBusyCores - 0.8) < 1e-9);
  assert.equal(c.redisInstances, 2);
  // loads: node CPU 116 nodes, memory ≈ 23.15, PostgreSQL 4 servers, Redis 1.6 instances; the SQLite writer no longer counts
  assert.equal(p.binding, 'cpu');
  assert.ok(Math.abs(p.loads.postgres! - 4) < 1e-9 && Math.abs(p.loads.redis! - 1.6) < 1e-9);
});

test('names PostgreSQL as the binding tier when its load passes the nodes\' and Redis\'s', () => {
  const cheapNodes = { ...CLUSTER, cpuPerSend: 1e-5, cpuPerAppend: 0, cpuPerDelivery: 0 };
  const p = plan({ ...WORKLOAD, users: 1_000_000 }, { ...COSTS, cluster: cheapNodes }, NODE, { pgCores: 1 });
  // PostgreSQL 8 cores ÷ (1 × 0.5) = 16 servers; nodes: 0.02 cores → CPU 0.02 node, memory ≈ 23.15 nodes
  assert.equal(p.cluster!.pgPrimaries, 16);
  assert.equal(p.binding, 'memory');
  const q = plan({ ...WORKLOAD, users: 1_000_000 }, { ...COSTS, bytesPerConn: 1, kernelBytesPerSocket: 1, cluster: cheapNodes }, NODE, { pgCores: 1 });
  assert.equal(q.binding, 'postgres');
});

test('fits a two-unknown cost and drops an undetermined one (a column of zeros) instead of returning nothing', () => {
  // y = 3·x0 + 0.5·x1; the third column is all zeros
  const X = [
    [1, 10, 0],
    [2, 5, 0],
    [4, 40, 0],
  ];
  const fit = nnls(X, X.map(([a, b]) => 3 * a! + 0.5 * b!));
  assert.ok(Math.abs(fit[0]! - 3) < 1e-9 && Math.abs(fit[1]! - 0.5) < 1e-9 && fit[2] === 0, String(fit));
});

test('shows a formula for every figure it prints', () => {
  const p = plan(WORKLOAD, COSTS, NODE);
  assert.ok(p.steps.length >= 10);
  for (const s of p.steps) assert.match(s.formula, /[=×÷+]/, `${s.what} has no arithmetic`);
});

test('recovers the per-send, per-append and per-delivery CPU from exact load steps', () => {
  const truth = { cpuPerSend: 2e-5, cpuPerAppend: 5e-6, cpuPerDelivery: 8e-6 };
  const steps = [
    [1000, 2000, 2000],
    [3000, 6000, 6000],
    [50, 25_000, 24_950],
    [200, 100_000, 99_800],
    [400, 20_000, 19_600],
  ].map(([m, a, d]) => ({ msgsPerSec: m!, appendsPerSec: a!, deliveriesPerSec: d!, cores: m! * truth.cpuPerSend + a! * truth.cpuPerAppend + d! * truth.cpuPerDelivery }));
  const fit = fitCpu(steps);
  for (const k of Object.keys(truth) as (keyof typeof truth)[]) assert.ok(Math.abs(fit[k] - truth[k]) / truth[k] < 1e-6, `${k}: ${fit[k]} vs ${truth[k]}`);
});

test('never fits a negative cost: a coefficient the data pushes below zero is dropped and the rest refitted', () => {
  // Exact data for cores = 0.01·msgs − 0.001·appends + 0.002·deliveries: an unconstrained fit returns −0.001.
  const steps = [
    [100, 100, 100],
    [100, 300, 200],
    [200, 300, 150],
    [300, 900, 400],
    [50, 400, 500],
  ].map(([m, a, d]) => ({ msgsPerSec: m!, appendsPerSec: a!, deliveriesPerSec: d!, cores: 0.01 * m! - 0.001 * a! + 0.002 * d! }));
  const fit = fitCpu(steps);
  assert.equal(fit.cpuPerAppend, 0);
  assert.ok(fit.cpuPerSend > 0 && fit.cpuPerDelivery > 0);
});
