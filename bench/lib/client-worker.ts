/**
 * A load-tool worker process (heartbeats run on the SDK's shared WireTicker): holds a share of the simulated devices (≤ ~18,000 sockets: one process may hold
 * 20,000 open files here), runs the commands the controller sends over IPC (see `WorkerCommand` in pool.ts),
 * and records what its devices see: delivery latency in an HDR histogram, deliveries, duplicates, echoes.
 *
 * Delivery latency is measured from the *intended* send time of an open-loop schedule (the message content
 * carries it), so a slow server cannot hide its queueing by slowing the sender (coordinated omission).
 */
import type { MsgEntry } from '../../src/protocol/index.ts';
import { encodeHistogram, newHistogram, recordMs } from './hist.ts';
import type { WorkerCommand } from './pool.ts';
import { SimConn, type Endpoint, type Transport } from './sim-conn.ts';

const wallMs = () => performance.timeOrigin + performance.now();

let transport: Transport = 'tcp';
let endpoint: Endpoint;
let localAddresses: string[] = ['127.0.0.1'];
let workerIndex = 0;
const conns = new Map<number, SimConn>();

// What the devices saw since the last `stats {reset}`.
let recvHist = newHistogram();
let deliveries = 0;
let uniqueDeliveries = 0;
let dups = 0;
let echoes = 0;
const seen = new Map<number, Set<number>>();
/** clientMsgIds are `workerIndex·10^10 + n`: unique over the whole run, so no send is ever a retry. */
let msgCounter = 0;

function onMsg(conn: SimConn, e: MsgEntry): void {
  if (e.from === conn.username) {
    echoes++;
    return;
  }
  deliveries++;
  const id = Number(e.clientMsgId);
  let s = seen.get(conn.id);
  if (!s) seen.set(conn.id, (s = new Set()));
  if (s.has(id)) {
    dups++;
    return;
  }
  s.add(id);
  uniqueDeliveries++;
  const sentAt = Number(e.content.slice(0, e.content.indexOf(' ')));
  if (sentAt > 0) recordMs(recvHist, wallMs() - sentAt);
}

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
    const conn = conns.get(c.id) ?? new SimConn(c.id, c.username, c.sid, transport, endpoint, localAddresses[c.id % localAddresses.length]!, onMsg, c.syncKey ?? 0);
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
  let issued = 0;
  let acked = 0;
  let errors = 0;
  let skipped = 0;
  let firstError = '';
  let outstanding = 0;
  const ackedPerPlan = new Array<number>(cmd.plan.length).fill(0);
  const plan = cmd.plan.map((p, index) => ({ ...p, index })).filter((p) => conns.get(p.connId)?.isOpen);
  if (plan.length === 0) return { sent: 0, acked: 0, errors: 0, skipped: 0, firstError: 'no open sender', ackHist: encodeHistogram(ackHist), ackedPerPlan };
  const rate = cmd.ratePerSec;
  const t0Wall = wallMs();
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - t0;
      // Message i is due at i / rate (the first at once): latency counts from that intended time.
      const due = Math.min(Math.floor((elapsed * rate) / 1000) + 1, Math.floor((cmd.durationMs * rate) / 1000));
      while (issued < due) {
        const i = issued++;
        const intended = t0Wall + (i * 1000) / rate;
        if (outstanding >= cmd.maxOutstanding) {
          skipped++;
          continue;
        }
        const p = plan[i % plan.length]!;
        const conn = conns.get(p.connId)!;
        const clientMsgId = String(workerIndex * 1e10 + ++msgCounter);
        outstanding++;
        conn
          .send({ clientMsgId, to: p.to, type: 1, content: `${intended.toFixed(3)} ${pad}` })
          .then((r) => {
            if (r.ret === 0) {
              acked++;
              ackedPerPlan[p.index]!++;
              recordMs(ackHist, wallMs() - intended);
            } else {
              errors++;
              firstError ||= `ret ${r.ret} ${r.errMsg ?? ''}`;
            }
          })
          .catch((err: Error) => {
            errors++;
            firstError ||= err.message;
          })
          .finally(() => outstanding--);
      }
      if (elapsed >= cmd.durationMs) {
        clearInterval(timer);
        resolve();
      }
    }, 2);
  });
  const drainUntil = performance.now() + 15_000;
  while (outstanding > 0 && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 20));
  return { sent: issued - skipped, acked, errors, skipped, unanswered: outstanding, firstError, elapsedMs: performance.now() - t0, ackHist: encodeHistogram(ackHist), ackedPerPlan };
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
      endpoint = m.endpoint;
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
        uniqueDeliveries,
        dups,
        echoes,
        recvHist: encodeHistogram(recvHist),
        bytesIn: [...conns.values()].reduce((a, c) => a + c.bytesIn, 0),
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        open: [...conns.values()].filter((c) => c.isOpen).length,
      };
      if (m.reset) {
        recvHist = newHistogram();
        deliveries = uniqueDeliveries = dups = echoes = 0;
      }
      return out;
    }
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
