// The load tool's reconciliation per (message, device): the senders' SEND_ACKs against what came off the wire,
// before any filtering by key. Its bookkeeping alone, then the load tool's own workers against a real server
// behind a relay that drops, doubles and re-pushes one message (fault-relay.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connectDevices, population, runOn, startWorkers } from '../../bench/lib/harness.ts';
import { BitSet, DeliveryLedger, mergeReconciliations, parseStepClientMsgId, SendLedger, stepClientMsgId, WireCopy, type StepMsgKey } from '../../bench/lib/reconcile.ts';
import { befriendAll, type SimUser } from '../../bench/lib/setup.ts';
import { devicesOwed, loadStep, type PlanItem, type StepOptions } from '../../bench/lib/steps.ts';
import type { Target } from '../../bench/lib/target.ts';
import { startServer } from '../helpers/server.ts';
import { startFaultRelay, type Fault } from './fault-relay.ts';

test('reads back the clientMsgIds it makes and refuses any other', () => {
  const key: StepMsgKey = { step: 0, item: 0, k: 0 };
  assert.equal(parseStepClientMsgId(stepClientMsgId(3, 17, 42), key), true);
  assert.deepEqual(key, { step: 3, item: 17, k: 42 });
  for (const other of ['10000000001', 'b1.2', 'b1.2.', 'b.1.2', 'bx.1.2', 'b1.2.3.4', 'b1.2.3 ', 'storm-0-@@1', '']) {
    assert.equal(parseStepClientMsgId(other, key), false, other);
  }
});

test('keeps a bitmap across growth and IPC bytes', () => {
  const b = new BitSet(8);
  for (const i of [0, 31, 32, 1000, 70_000]) assert.equal(b.set(i), false);
  assert.equal(b.set(1000), true);
  const copy = BitSet.fromBytes(b.toBytes());
  assert.equal(copy.count(), 5);
  assert.ok([0, 31, 32, 1000, 70_000].every((i) => copy.has(i)));
  assert.equal(copy.has(999), false);
});

test('counts an owed pair that never arrived as lost and a copy nobody asked for as a duplicate', () => {
  const step = 7;
  // Item 4 is sent by device 1; device 2 (the peer) is owed it; device 1 gets its own echo, owed nothing.
  const sender = new SendLedger(step, 4, 1, 8);
  for (let k = 0; k < 5; k++) assert.equal(sender.issue(0), k);
  for (const k of [0, 1, 2, 3]) sender.ack(0, k, 100 + k);
  sender.fail(0, 4);
  const sent = sender.summary();
  assert.deepEqual([sent.issuedPerPlan, sent.ackedPerPlan, sent.failedPerPlan], [[5], [4], [1]]);
  assert.equal(sender.msgIdOf(4, 3), 103);
  assert.ok(Number.isNaN(sender.msgIdOf(4, 4)));

  const ledger = new DeliveryLedger(step, [2, 4, 1, 1, 4, 0]);
  const id = (k: number) => stepClientMsgId(step, 4, k);
  assert.equal(ledger.onEntry(2, id(0), WireCopy.NEW), true);
  ledger.onEntry(2, id(1), WireCopy.NEW);
  ledger.onEntry(2, id(1), WireCopy.UNASKED_AGAIN); // a second PUSH: duplicate
  ledger.onEntry(2, id(3), WireCopy.NEW);
  ledger.onEntry(2, id(3), WireCopy.ASKED_AGAIN); // fetched again by a SYNC from a lower key: not a duplicate
  ledger.onEntry(2, id(4), WireCopy.NEW); // the failed send arrived anyway
  ledger.onEntry(1, id(0), WireCopy.NEW); // own echo
  ledger.onEntry(3, id(0), WireCopy.NEW); // a device owed nothing
  ledger.onEntry(2, stepClientMsgId(step - 1, 4, 9), WireCopy.NEW); // an earlier step's message
  assert.equal(ledger.onEntry(2, '10000000001', WireCopy.NEW), false);
  assert.equal(ledger.pairsSeen, 4);

  const r = mergeReconciliations([ledger.reconcile([undefined, undefined, undefined, undefined, sent.ackedBits[0]!])]);
  assert.equal(r.expectedPairs, 4);
  assert.equal(r.deliveredPairs, 3);
  assert.equal(r.lost, 1);
  assert.deepEqual(r.lostSamples.map((s) => [s.connId, s.clientMsgId]), [[2, id(2)]]);
  assert.equal(r.duplicates, 1);
  assert.deepEqual(r.duplicateSamples.map((s) => [s.connId, s.clientMsgId]), [[2, id(1)]]);
  assert.equal(r.refetched, 1);
  assert.equal(r.deliveredUnacked, 1);
  assert.equal(r.ownEchoes, 1);
  assert.equal(r.unexpected, 1);
  assert.equal(r.lateCopies, 1);
});

test('a new log position carrying a message already received is a duplicate (a send committed twice)', () => {
  const ledger = new DeliveryLedger(1, [5, 0, 1]);
  ledger.onEntry(5, stepClientMsgId(1, 0, 0), WireCopy.NEW);
  ledger.onEntry(5, stepClientMsgId(1, 0, 0), WireCopy.NEW);
  const acked = new BitSet();
  acked.set(0);
  const r = ledger.reconcile([acked.toBytes()]);
  assert.deepEqual([r.lost, r.duplicates, r.refetched], [0, 1, 0]);
});

test('reports a dropped delivery as lost and a doubled or re-pushed one as duplicated, through a relay in front of a real server', { timeout: 120_000 }, async (t) => {
  const server = await startServer();
  const relay = await startFaultRelay(server.tcpPort);
  const target: Target = {
    kind: 'url',
    endpoint: { httpUrl: server.url, tcpHost: '127.0.0.1', tcpPort: relay.port, wsUrl: '' },
    pids: () => [],
    settings: { inProcess: 'test/helpers/server.ts' },
    async stop() {
      await relay.close();
      await server.stop();
    },
  };
  const run = runOn(target, 'tcp');
  try {
    const users = await population(run, 'rc_', 4);
    await befriendAll(server.url, [0, 2].map((i) => [users[i]!, users[i + 1]!] as [SimUser, SimUser]));
    const specs = users.map((u, i) => ({ id: i, username: u.username, sid: u.sids[0]! }));
    await startWorkers(run, { 'client-workers': '2' }, specs.length);
    const c = await connectDevices(run, specs, 4);
    assert.equal(c.connected, 4);
    // Device i (worker i mod 2) writes to device i ^ 1, held by the other worker. Item 0 is device 0's.
    const plans: PlanItem[][] = [[], []];
    specs.forEach((s, i) => plans[i % 2]!.push({ connId: s.id, to: users[i ^ 1]!.username }));
    const options: StepOptions = { seconds: 1, p99LimitMs: 10_000, contentBytes: 32, recipientDevices: devicesOwed(specs, (item) => [item.to]), label: 'relay', drainIdleMs: 3000 };
    // 100 msgs/s for 1 s over 4 senders: device 0 sends 25; the fault hits its 6th on the way to device 1.
    const step = async (kind?: Fault['kind']) => {
      const victim = stepClientMsgId(run.stepCount + 1, 0, 5);
      relay.arm(kind ? { kind, clientMsgId: victim } : undefined);
      const s = await loadStep(run, plans, 100, options);
      if (kind) assert.ok(relay.applied(), `the relay applied ${kind}`);
      assert.equal(s.errors, 0);
      assert.equal(s.unanswered, 0);
      assert.equal(s.reconciliation.unexpected, 0);
      assert.ok(s.expectedDeliveries >= 95, `≈ 100 owed deliveries, got ${s.expectedDeliveries}`);
      return { s, victim };
    };

    await t.test('counts every acknowledged message once at its recipient when nothing goes wrong', async () => {
      const { s } = await step();
      assert.equal(s.lost, 0);
      assert.equal(s.duplicates, 0);
      assert.equal(s.deliveries, s.expectedDeliveries);
      // Synchat pushes each message to the sending device too; that echo is counted apart, not owed.
      assert.equal(s.reconciliation.ownEchoes, s.expectedDeliveries);
      assert.equal(s.passed, true, s.why);
    });

    await t.test('reports a message the device never received as lost, naming it', async () => {
      const { s, victim } = await step('drop');
      assert.equal(s.lost, 1);
      assert.equal(s.deliveries, s.expectedDeliveries - 1);
      assert.deepEqual(s.reconciliation.lostSamples.map((x) => [x.clientMsgId, x.connId]), [[victim, 1]]);
      assert.match(s.reconciliation.lostSamples[0]!.msgId ?? '', /^\d+$/);
      assert.equal(s.duplicates, 0);
      assert.equal(s.passed, false);
    });

    await t.test('counts nothing lost when a dropped PUSH is fetched by the sync its gap triggers', async () => {
      const { s } = await step('dropPush');
      assert.equal(s.lost, 0);
      assert.equal(s.duplicates, 0);
    });

    await t.test('reports a PUSH sent twice as duplicates, though the device skips the second copy by key', async () => {
      const { s, victim } = await step('duplicate');
      // The doubled PUSH may carry the entries of several messages that committed together: each is one duplicate.
      assert.ok(relay.copiesAdded() >= 1);
      assert.equal(s.duplicates, relay.copiesAdded());
      assert.ok(s.reconciliation.duplicateSamples.some((x) => x.clientMsgId === victim && x.connId === 1));
      assert.equal(s.lost, 0);
    });

    await t.test('reports an entry pushed again after it was delivered as a duplicate', async () => {
      const { s, victim } = await step('repush');
      assert.equal(relay.copiesAdded(), 1);
      assert.equal(s.duplicates, 1);
      assert.deepEqual(s.reconciliation.duplicateSamples.map((x) => x.clientMsgId), [victim]);
      assert.equal(s.lost, 0);
    });
  } finally {
    await run.close();
  }
});
