/**
 * A load-tool worker process (heartbeats run on the SDK's shared WireTicker): holds a share of the simulated
 * devices (≤ ~18,000 sockets: one process may hold 20,000 open files here), runs the commands the controller
 * sends over IPC (see `WorkerCommand` in pool.ts), and records what its devices see: delivery latency in an HDR
 * histogram, deliveries, and — for a load step — which sends the server acknowledged and which (message, device)
 * pairs came off the wire how often (reconcile.ts).
 *
 * Delivery latency is measured from the *intended* send time of an open-loop schedule (the message content
 * carries it), so a slow server cannot hide its queueing by slowing the sender (coordinated omission).
 */
import type { MsgEntry } from '../../src/protocol/index.ts';
import { encodeHistogram, newHistogram, recordMs } from './hist.ts';
import type { WorkerCommand } from './pool.ts';
import { DeliveryLedger, SendLedger, stepClientMsgIdPrefix, WireCopy } from './reconcile.ts';
import { SimConn, type DeviceObserver, type Endpoint, type Transport } from './sim-conn.ts';

const wallMs = () => performance.timeOrigin + performance.now();

let transport: Transport = 'tcp';
/** One per node of the target; a device connects to `endpoints[spec.node ?? 0]`. */
let endpoints: Endpoint[] = [];
let localAddresses: string[] = ['127.0.0.1'];
let workerIndex = 0;
const conns = new Map<number, SimConn>();

// What the devices saw since the last `stats {reset}`.
let recvHist = newHistogram();
/** Message entries applied from other users (each log position once). */
let deliveries = 0;
/** Own messages applied (echoes to the sender's devices). */
let echoes = 0;
/** Message entries that came off the wire again unasked (WireCopy.UNASKED_AGAIN), load steps or not. */
let wireRepeats = 0;

// The current load step (reconcile.ts): what this worker's senders were answered, what its devices received.
let sendLedger: SendLedger | undefined;
let deliveryLedger: DeliveryLedger | undefined;
/** Step-message copies that arrived while no step was being tracked (after a reconcile): late, reported with the next step. */
let untrackedStepCopies = 0;
let lateBeforeStep = 0;

const observer: DeviceObserver = {
  onWireMsg(conn: SimConn, e: MsgEntry, copy: WireCopy): void {
    if (copy === WireCopy.UNASKED_AGAIN) wireRepeats++;
    if (deliveryLedger) deliveryLedger.onEntry(conn.id, e.clientMsgId, copy);
    else if (e.clientMsgId.charCodeAt(0) === 98 /* b: a step message */) untrackedStepCopies++;
  },
  onAppliedMsg(conn: SimConn, e: MsgEntry): void {
    if (e.from === conn.username) {
      echoes++;
      return;
    }
    deliveries++;
    // Content is "<intended send time, ms since the epoch> <padding>".
    const sentAt = parseFloat(e.content);
    if (sentAt > 0) recordMs(recvHist, wallMs() - sentAt);
  },
};

function progress(data: Record<string, unknown>): void {
  process.send!({ event: 'progress', worker: workerIndex, ...data });
}

async function pooled<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function connectAll(cmd: Extract<WorkerCommand, { cmd: 'connect' }>): Promise<unknown> {
  const authHist = newHistogram();
  let connected = 0;
  let failed = 0;
  let firstError = '';
  const t0 = performance.now();
  const tick = setInterval(() => progress({ connected, failed }), 500);
  await pooled(cmd.conns, cmd.concurrency, async (c) => {
    const conn = conns.get(c.id) ?? new SimConn(c.id, c.username, c.sid, transport, endpoints[c.node ?? 0]!, localAddresses[c.id % localAddresses.length]!, observer, c.syncKey ?? 0);
    conns.set(c.id, conn);
    const s = performance.now();
    try {
      await conn.connect();
      recordMs(authHist, performance.now() - s);
      connected++;
    } catch (err) {
      failed++;
      conns.delete(c.id);
      firstError ||= (err as Error).message;
    }
  });
  clearInterval(tick);
  return { connected, failed, firstError, elapsedMs: performance.now() - t0, authHist: encodeHistogram(authHist) };
}

async function sendLoad(cmd: Extract<WorkerCommand, { cmd: 'send' }>): Promise<unknown> {
  const ackHist = newHistogram();
  const pad = 'x'.repeat(Math.max(0, cmd.contentBytes - 20));
  const rate = cmd.ratePerSec;
  const total = Math.floor((cmd.durationMs * rate) / 1000);
  const ledger = (sendLedger = new SendLedger(cmd.step, cmd.firstItem, cmd.plan.length, Math.ceil(total / Math.max(1, cmd.plan.length))));
  let issued = 0;
  let acked = 0;
  let errors = 0;
  let skipped = 0;
  let firstError = '';
  let outstanding = 0;
  // Senders whose device is open take turns; each keeps the constant part of its JSON body.
  const plan = cmd.plan
    .map((p, index) => ({ conn: conns.get(p.connId), index, head: `{"clientMsgId":"${stepClientMsgIdPrefix(cmd.step, cmd.firstItem + index)}`, mid: `","to":${JSON.stringify(p.to)},"type":1,"content":"` }))
    .filter((p) => p.conn?.isOpen);
  const answers = () => ({ sent: issued - skipped, acked, errors, skipped, unanswered: outstanding, firstError, ...ledger.summary(), ackHist: encodeHistogram(ackHist) });
  if (plan.length === 0) return { ...answers(), firstError: 'no open sender' };
  const tail = ` ${pad}"}`;
  const t0Wall = wallMs();
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const elapsed = performance.now() - t0;
      // Message i is due at i / rate (the first at once): latency counts from that intended time.
      const due = Math.min(Math.floor((elapsed * rate) / 1000) + 1, total);
      while (issued < due) {
        const i = issued++;
        const intended = t0Wall + (i * 1000) / rate;
        if (outstanding >= cmd.maxOutstanding) {
          skipped++;
          continue;
        }
        const p = plan[i % plan.length]!;
        const k = ledger.issue(p.index);
        outstanding++;
        // One derived promise per send (not then/catch/finally: three).
        p.conn!.sendJson(p.head + k + p.mid + intended.toFixed(3) + tail).then(
          (r) => {
            outstanding--;
            if (r.ret === 0 && r.msgId !== undefined) {
              acked++;
              ledger.ack(p.index, k, Number(r.msgId));
              recordMs(ackHist, wallMs() - intended);
            } else {
              errors++;
              ledger.fail(p.index, k);
              firstError ||= r.ret === 0 ? 'SEND_ACK ret 0 without msgId' : `ret ${r.ret} ${r.errMsg ?? ''}`;
            }
          },
          (err: Error) => {
            outstanding--;
            errors++;
            ledger.fail(p.index, k);
            firstError ||= err.message;
          },
        );
      }
      if (elapsed >= cmd.durationMs) {
        resolve();
        return;
      }
      // Wake when the next message is due, but at most every 2 ms (sends up to 2 ms late, counted in the
      // latency): a fixed 2 ms interval wakes ~470 times/s whatever the rate (~0.02 core per worker, measured).
      const nextDueMs = (issued * 1000) / rate;
      setTimeout(tick, Math.min(Math.max(2, nextDueMs - elapsed), cmd.durationMs - elapsed + 1));
    };
    tick();
  });
  // Sends still without an answer at this deadline are reported unanswered; a later answer changes nothing.
  const drainUntil = performance.now() + cmd.answerTimeoutMs;
  while (outstanding > 0 && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 20));
  return { ...answers(), elapsedMs: performance.now() - t0 };
}

async function burst(cmd: Extract<WorkerCommand, { cmd: 'burst' }>): Promise<unknown> {
  // Closed loop: `window` sends in flight until `count` are answered (fills a log as fast as the server takes it).
  const conn = conns.get(cmd.connId);
  if (!conn) throw new Error(`no device ${cmd.connId} in this worker`);
  let next = 0;
  let acked = 0;
  let errors = 0;
  let firstError = '';
  const t0 = performance.now();
  const tick = setInterval(() => progress({ acked }), 500);
  await Promise.all(
    Array.from({ length: cmd.window }, async () => {
      while (next < cmd.count) {
        const n = next++;
        const r = await conn.send({ clientMsgId: String(workerIndex * 1e10 + 5e9 + n), to: cmd.to, type: 1, content: `0 catch-up entry ${n}` }).catch((e: Error) => ({ ret: -1, errMsg: e.message }));
        if (r.ret === 0) acked++;
        else {
          errors++;
          firstError ||= `ret ${r.ret} ${r.errMsg ?? ''}`;
        }
      }
    }),
  );
  clearInterval(tick);
  return { acked, errors, firstError, elapsedMs: performance.now() - t0 };
}

async function reconnectAll(cmd: Extract<WorkerCommand, { cmd: 'reconnect' }>): Promise<unknown> {
  const currentHist = newHistogram();
  let reconnected = 0;
  let failed = 0;
  let current = 0;
  let firstError = '';
  const t0 = performance.now();
  const tick = setInterval(() => progress({ reconnected, current, failed }), 500);
  await pooled([...conns.values()], cmd.concurrency, async (conn) => {
    try {
      const ok = await conn.connect();
      reconnected++;
      void conn.whenCurrent(ok.syncKey).then(() => {
        current++;
        recordMs(currentHist, performance.now() - t0);
      });
    } catch (err) {
      failed++;
      firstError ||= (err as Error).message;
    }
  });
  const until = performance.now() + cmd.timeoutMs;
  while (current < reconnected && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
  clearInterval(tick);
  return { reconnected, failed, current, firstError, allCurrentMs: performance.now() - t0, currentHist: encodeHistogram(currentHist) };
}

async function handle(m: WorkerCommand): Promise<unknown> {
  switch (m.cmd) {
    case 'init':
      transport = m.transport;
      endpoints = m.endpoints;
      localAddresses = m.localAddresses;
      workerIndex = m.workerIndex;
      return {};
    case 'connect':
      return connectAll(m);
    case 'send':
      return sendLoad(m);
    case 'stats': {
      const cpu = process.cpuUsage();
      const out = {
        deliveries,
        // Applied entries are unique per log position by construction; kept for the scenarios that read it.
        uniqueDeliveries: deliveries,
        dups: wireRepeats,
        echoes,
        recvHist: encodeHistogram(recvHist),
        bytesIn: [...conns.values()].reduce((a, c) => a + c.bytesIn, 0),
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        open: [...conns.values()].filter((c) => c.isOpen).length,
      };
      if (m.reset) {
        recvHist = newHistogram();
        deliveries = wireRepeats = echoes = 0;
      }
      return out;
    }
    case 'count': {
      const cpu = process.cpuUsage();
      return { pairsSeen: deliveryLedger?.pairsSeen ?? 0, deliveries, cpuSeconds: (cpu.user + cpu.system) / 1e6, systemCpuSeconds: cpu.system / 1e6 };
    }
    case 'expect':
      deliveryLedger = new DeliveryLedger(m.step, m.routes, m.expectedPerItem);
      lateBeforeStep = untrackedStepCopies;
      untrackedStepCopies = 0;
      return {};
    case 'reconcile': {
      if (deliveryLedger?.step !== m.step) throw new Error(`reconcile: step ${m.step} is not being tracked`);
      const t0 = performance.now();
      const r = deliveryLedger.reconcile(m.acked);
      r.lateCopies += lateBeforeStep;
      deliveryLedger = undefined;
      return { ...r, workerMs: +(performance.now() - t0).toFixed(2) };
    }
    case 'msgIds':
      return m.keys.map(([item, k]) => (sendLedger?.step === m.step ? sendLedger.msgIdOf(item, k) : NaN));
    case 'heads':
      return [...conns.values()].map((c) => ({ id: c.id, syncKey: c.syncKey, knownHead: c.knownHead, isOpen: c.isOpen }));
    case 'drop':
      for (const c of conns.values()) c.destroy();
      return { dropped: conns.size };
    case 'reconnect':
      return reconnectAll(m);
    case 'burst':
      return burst(m);
    case 'close':
      for (const c of conns.values()) c.destroy();
      setTimeout(() => process.exit(0), 50);
      return {};
  }
}

process.on('message', (m: WorkerCommand & { reqId: number }) => {
  handle(m).then(
    (result) => process.send!({ reqId: m.reqId, result }),
    (err: Error) => process.send!({ reqId: m.reqId, error: err.stack ?? err.message }),
  );
});
process.on('disconnect', () => process.exit(0));
