// The load tool's own bookkeeping: where connections go, how latency is summarised, and that a run against a
// server that delivers everything counts every delivery once (no lost, no duplicated) — against the ws relay
// baseline, which needs no database — and, with PostgreSQL and Redis, across two nodes with CPU per part.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { encodeHistogram, mergeHistograms, newHistogram, recordMs, summarize } from '../../bench/lib/hist.ts';
import { connectDevices, openRun, population, spreadOverNodes, startWorkers, type Run } from '../../bench/lib/harness.ts';
import { CONNS_PER_SOURCE_ADDRESS, MAX_SOCKETS_PER_WORKER, sourceAddresses, workersFor } from '../../bench/lib/pool.ts';
import { befriendAll } from '../../bench/lib/setup.ts';
import { devicesOwed, loadStep, type PlanItem, type StepResult } from '../../bench/lib/steps.ts';
import { storeAndNodes } from '../../bench/lib/target.ts';
import { POSTGRES_ADMIN_URL, REDIS_URL, requirePostgres, requireRedis } from '../helpers/services.ts';

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

test('reads --store and --nodes: several nodes imply PostgreSQL, and SQLite with several nodes is refused', () => {
  assert.deepEqual(storeAndNodes({}), { store: 'sqlite', nodes: 1 });
  assert.deepEqual(storeAndNodes({ store: 'postgres' }), { store: 'postgres', nodes: 1 });
  assert.deepEqual(storeAndNodes({ nodes: '3' }), { store: 'postgres', nodes: 3 });
  assert.throws(() => storeAndNodes({ nodes: '2', store: 'sqlite' }), /--store postgres/);
  assert.throws(() => storeAndNodes({ nodes: '0' }), /--nodes/);
  assert.throws(() => storeAndNodes({ store: 'mysql' }), /--store/);
});

test('spreads devices over the nodes round-robin, so that the two users of a pair sit on different nodes', () => {
  const specs = Array.from({ length: 6 }, (_, i) => ({ id: i, username: `u${i}`, sid: `s${i}` }));
  assert.deepEqual(spreadOverNodes(specs, 3).map((s) => s.node), [0, 1, 2, 0, 1, 2]);
  assert.deepEqual(spreadOverNodes([{ ...specs[0]!, node: 2 }, specs[1]!], 2).map((s) => s.node), [2, 1]);
  assert.deepEqual(spreadOverNodes(specs, 1).map((s) => s.node), new Array(6).fill(undefined));
});

/** Four users in two pairs (0↔1, 2↔3), one device each, connected; one open-loop step of 200 msgs/s for 1 s. */
async function pairsStep(run: Run, o: Record<string, string>, prefix: string): Promise<StepResult> {
  const users = await population(run, prefix, 4);
  await befriendAll(run.target.endpoint.httpUrl, [0, 2].map((i) => [users[i]!, users[i + 1]!] as [(typeof users)[0], (typeof users)[0]]));
  const specs = users.map((u, i) => ({ id: i, username: u.username, sid: u.sids[0]! }));
  await startWorkers(run, o, specs.length);
  const c = await connectDevices(run, specs, 4);
  assert.equal(c.connected, 4);
  const plans: PlanItem[][] = [[], []];
  specs.forEach((s, i) => plans[i % 2]!.push({ connId: s.id, to: users[i ^ 1]!.username }));
  return loadStep(run, plans, 200, { seconds: 1, p99LimitMs: 10_000, contentBytes: 32, recipientDevices: devicesOwed(specs, (item) => [item.to]), label: 'test' });
}

test('counts every acknowledged message once at its recipient in an open-loop step', { timeout: 60_000 }, async () => {
  const o = { transport: 'ws', 'client-workers': '2' };
  const run = await openRun(o, 'baseline');
  try {
    const step = await pairsStep(run, o, 'lt_');
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

const missing = (await requirePostgres()) ?? (await requireRedis());

test('runs two nodes on a fresh PostgreSQL database and Redis, delivers across them, and accounts CPU per part', { timeout: 120_000, skip: missing }, async () => {
  const o = { transport: 'tcp', nodes: '2', 'server-workers': '0', 'client-workers': '2', 'postgres-url': POSTGRES_ADMIN_URL, 'redis-url': REDIS_URL };
  const run = await openRun(o, 'synchat');
  const database = String(run.target.settings.SYNCHAT_POSTGRES_URL);
  try {
    assert.equal(run.target.endpoints?.length, 2);
    assert.deepEqual([run.target.settings.store, run.target.settings.nodes], ['postgres', 2]);
    assert.match(String(run.target.settings.postgresVersion), /^\d+/);
    assert.match(String(run.target.settings.redisVersion), /^\d+\./);
    const step = await pairsStep(run, o, 'ln_');
    // Devices 0 and 1 (a pair) are on nodes 0 and 1: every delivery crossed Redis.
    assert.equal(step.deliveries, step.expectedDeliveries);
    assert.deepEqual([step.lost, step.duplicates, step.errors], [0, 0, 0]);
    assert.deepEqual(Object.keys(step.parts).sort(), ['node0', 'node1', 'postgres', 'postgresOtherDbs', 'redis']);
    assert.ok(step.parts.node0!.cores > 0 && step.parts.node1!.cores > 0, JSON.stringify(step.parts));
    assert.ok(step.postgres && step.postgres.walBytesPerMsg > 0 && step.postgres.writeTransactionsPerMsg > 0, JSON.stringify(step.postgres));
  } finally {
    await run.close();
  }
  // Closing the run dropped the bench's database.
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  try {
    const name = new URL(database).pathname.slice(1);
    assert.equal((await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount, 0);
  } finally {
    await admin.end();
  }
});
