/**
 * The soak: one server in the `npm start` layout (a core process and SYNCHAT_WORKERS gateway processes, rate limits
 * off and connection caps raised as for every bench server, proc.ts BENCH_SERVER_ENV) under mixed traffic for a
 * while, with connections coming and going. Each user is an actor that, round after round, logs a device in over
 * TCP, WebSocket or long-poll (in turn), chats (direct and group sends, now and then a media file, an explicit
 * sync), then logs out, stops (a clean close) or is dropped; apart from them, raw devices authenticate and then
 * vanish (they never read, answer a heartbeat or close). Every server process is sampled on a fixed period: RSS and
 * open descriptors from /proc, heap used from inside through its inspector (`--inspect`). At the end every
 * acknowledged send is looked up in the log of its sender and of every recipient: lost and doubled sends are
 * counted, and the descriptors are sampled again after every client left.
 *
 * Used by `npm run soak` (bench/soak/main.ts) and by its smoke test (test/bench/soak.test.ts).
 */
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import WebSocket from 'ws';
import { SynchatClient, type TransportName } from '../../src/sdk/index.ts';
import { nodeWebSocketConnector, tcpConnector } from '../../src/sdk/node/index.ts';
import { OP, encodePacket } from '../../src/protocol/index.ts';
import { Inspector } from '../conn-memory/inspector.ts';
import { processTree } from '../lib/monitor.ts';
import { call, dropIdleSockets, rssBytes, spawnServer, type ServerProcess } from '../lib/proc.ts';
import { befriendAll, createGroup, registerUsers, runTag, type SimUser } from '../lib/setup.ts';

/** What a soak does. */
export interface SoakOptions {
  /** How long traffic runs, in seconds. */
  seconds: number;
  /** Actors (users; each holds at most one device at a time). */
  users: number;
  /** Gateway processes (SYNCHAT_WORKERS). */
  workers: number;
  /** Sampling period of the server's processes, in seconds. */
  sampleSeconds: number;
  /** Width of a latency bucket, in seconds (60 for "per minute"). */
  bucketSeconds: number;
  /** Pause between an actor's sends, in ms (a random share of it is added). */
  sendGapMs: number;
  /** How long an actor's device stays connected per round, in seconds (a random share of it is added). */
  roundSeconds: number;
  /** Extra SYNCHAT_* settings for the server. */
  env?: Record<string, string>;
  /** Called with a line of progress now and then. */
  log?: (line: string) => void;
}

/** One process's sample. */
export interface ProcSample {
  /** Seconds since traffic started (negative: before). */
  t: number;
  rssMiB: number;
  /** Heap used as it stands (garbage not yet collected included). */
  heapUsedMiB: number;
  /** Memory outside the V8 heap that JavaScript objects hold (Buffers, ArrayBuffers), from process.memoryUsage(). */
  externalMiB: number;
  /** Heap used right after a full GC (live objects only), on every {@link LIVE_HEAP_EVERY_S} seconds' sample. */
  heapLiveMiB?: number;
  fds: number;
}

/**
 * How often a sample first forces a full GC in every server process to read its live heap, in seconds: the slope of
 * the live heap is the leak signal (heap as it stands saws with the collector), and a full GC costs each process a
 * pause of a few ms, so not on every sample.
 */
export const LIVE_HEAP_EVERY_S = 30;

/** Send→ack latency of one bucket of the run. */
export interface LatencyBucket {
  /** Start of the bucket, seconds since traffic started. */
  t: number;
  sends: number;
  p50Ms: number;
  p99Ms: number;
}

/** What a soak measured. */
export interface SoakResult {
  settings: Record<string, string | number>;
  /** Per server process (by role and pid): its samples. */
  processes: { role: string; pid: number; samples: ProcSample[] }[];
  latency: LatencyBucket[];
  counts: {
    rounds: number;
    logins: number;
    logouts: number;
    stops: number;
    drops: number;
    vanished: number;
    /** Vanished devices the server closed while the run lasted (it never hears from them). */
    vanishedClosedByServer: number;
    sends: number;
    groupSends: number;
    mediaSends: number;
    syncs: number;
    /** Sends that failed (SendFailedError or an API error); not counted as lost. */
    sendErrors: number;
  };
  /** Every acknowledged send, checked in every log it belongs to. */
  check: { acked: number; expectedCopies: number; lost: number; doubled: number; firstProblem: string };
  /** Descriptors of every server process together: before traffic, and after every client left. */
  fds: { start: number; end: number; perProcessStart: Record<string, number>; perProcessEnd: Record<string, number>; kindsStart: Record<string, Record<string, number>>; kindsEnd: Record<string, Record<string, number>> };
  /** Errors the actors met (first few), besides failed sends. */
  errors: string[];
}

/** The open-descriptor count of a process (0 when it exited). */
export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** A process's open descriptors by kind (socket, pipe, anon_inode:[eventfd], a file's path), for the record. */
export function fdKinds(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  let fds: string[] = [];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const fd of fds) {
    let target = '';
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/:\[\d+\]$/, '');
    } catch {
      continue; // closed meanwhile
    }
    out[target] = (out[target] ?? 0) + 1;
  }
  return out;
}

/** Least-squares slope of y over x (units of y per unit of x); 0 with fewer than two points. */
export function slope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** The value at quantile q of sorted values (nearest rank). */
function quantile(sorted: readonly number[], q: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

/** Closes the idle sockets of Node's global fetch (undici's global dispatcher); fetch must not be used after. */
async function closeGlobalFetchAgent(): Promise<void> {
  const dispatcher = (globalThis as Record<symbol, { close?(): Promise<void> } | undefined>)[Symbol.for('undici.globalDispatcher.1')];
  await dispatcher?.close?.();
}

const mib = (bytes: number | undefined) => +((bytes ?? 0) / 2 ** 20).toFixed(2);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PASSWORD = 'bench-password';

/**
 * A device that authenticates and then vanishes: it never writes again (no heartbeat, no ACK, no next synccheck) and
 * never closes. Its socket still reads and drops what comes (a paused socket would not see the server's FIN, so
 * the run could not tell whether the server closed it).
 */
interface Vanished {
  /** True once the server closed it. */
  isClosed: boolean;
  destroy(): void;
}

/** A raw long connection (TCP or /ws) that sends AUTH and then nothing more. */
async function vanishLong(transport: 'tcp' | 'ws', server: ServerProcess, sid: string): Promise<Vanished> {
  const auth = encodePacket(OP.AUTH, 1, new TextEncoder().encode(JSON.stringify({ sid })));
  if (transport === 'tcp') {
    const socket: Socket = netConnect({ host: '127.0.0.1', port: server.tcpPort });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const v = { isClosed: false, destroy: () => socket.destroy() };
    socket.on('error', () => {}).on('data', () => {}).once('close', () => (v.isClosed = true));
    socket.write(auth);
    return v;
  }
  const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/ws`, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const v = { isClosed: false, destroy: () => ws.terminate() };
  ws.on('error', () => {}).once('close', () => (v.isClosed = true));
  ws.send(auth, { binary: true });
  return v;
}

/** A long-poll device that parks a synccheck and never comes back for the next (its keep-alive socket stays open). */
async function vanishPoll(server: ServerProcess, sid: string, syncKey: number): Promise<Vanished> {
  const socket: Socket = netConnect({ host: '127.0.0.1', port: server.httpPort });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const v = { isClosed: false, destroy: () => socket.destroy() };
  socket.on('error', () => {}).on('data', () => {}).once('close', () => (v.isClosed = true));
  socket.write(`GET /api/synccheck?syncKey=${syncKey}&timeout=30000 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${sid}\r\nConnection: keep-alive\r\n\r\n`);
  return v;
}

/** Runs a soak; always stops the server it started. */
export async function runSoak(opt: SoakOptions): Promise<SoakResult> {
  const log = opt.log ?? (() => {});
  const httpPort = 10_000 + 4 * Math.floor(Math.random() * 5_000);
  const inspectBase = httpPort + 2;
  const server = await spawnServer({ SYNCHAT_WORKERS: String(opt.workers), ...opt.env }, { httpPort, tcpPort: httpPort + 1, execArgv: [`--inspect=127.0.0.1:${inspectBase}`] });
  const inspectors: Inspector[] = [];
  const vanished: Vanished[] = [];
  try {
    // node:cluster gives gateway k the inspector port inspectBase + k.
    await sleep(opt.workers > 0 ? 1500 : 100);
    for (let k = 0; k <= opt.workers; k++) inspectors.push(await Inspector.open(inspectBase + k));
    const heapByPid = async (gc: boolean): Promise<Map<number, { heapUsed: number; external: number }>> => {
      const out = new Map<number, { heapUsed: number; external: number }>();
      await Promise.all(
        inspectors.map(async (i) => {
          const m = await i.memory({ gc });
          out.set(m.pid, m);
        }),
      );
      return out;
    };
    const pids = processTree(server.pid);
    // The core is the spawned process; its node:cluster children are gateways; anything else (esbuild's service,
    // started by tsx) is named by its command.
    const role = (pid: number) => {
      if (pid === server.pid) return 'core';
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return cmd.some((a) => a.endsWith('main.ts')) || cmd[0] === process.execPath ? `gateway-${pid}` : `${cmd[0]!.split('/').at(-1)}-${pid}`;
    };
    const processes = pids.map((pid) => ({ role: role(pid), pid, samples: [] as ProcSample[] }));
    let t0 = performance.now();
    let lastLive = -Infinity;
    const sample = async (forceLive = false) => {
      const heap = await heapByPid(false);
      const isLive = forceLive || performance.now() - lastLive >= LIVE_HEAP_EVERY_S * 1000;
      const live = isLive ? await heapByPid(true) : undefined;
      if (isLive) lastLive = performance.now();
      const t = +((performance.now() - t0) / 1000).toFixed(1);
      for (const p of processes) {
        let rss = 0;
        try {
          rss = rssBytes(p.pid);
        } catch {
          // exited
        }
        p.samples.push({ t, rssMiB: +(rss / 2 ** 20).toFixed(2), heapUsedMiB: mib(heap.get(p.pid)?.heapUsed), externalMiB: mib(heap.get(p.pid)?.external), ...(live ? { heapLiveMiB: mib(live.get(p.pid)?.heapUsed) } : {}), fds: fdCount(p.pid) });
      }
    };
    const fdsNow = () => Object.fromEntries(processes.map((p) => [p.role, fdCount(p.pid)]));
    const kindsNow = () => Object.fromEntries(processes.map((p) => [p.role, fdKinds(p.pid)]));

    // Setup: users (one verification session each), a ring of contacts, groups of up to 6 (their creator befriends them).
    const base = server.url;
    const tag = runTag();
    const users = await registerUsers(base, Array.from({ length: opt.users }, (_, i) => `soak${tag}_${i}`));
    await befriendAll(base, users.map((u, i) => [u, users[(i + 1) % users.length]!] as [SimUser, SimUser]));
    const groups: { id: string; members: string[] }[] = [];
    for (let g = 0; g * 6 < users.length; g++) {
      const members = users.slice(g * 6, g * 6 + 6);
      if (members.length < 3) break;
      const hub = g * 6;
      const isRingNeighbour = (j: number) => j === (hub + 1) % users.length || j === (hub - 1 + users.length) % users.length;
      const strangers = members.filter((_, k) => k > 0 && !isRingNeighbour(hub + k));
      await befriendAll(base, strangers.map((m) => [members[0]!, m] as [SimUser, SimUser]));
      groups.push({ id: await createGroup(base, members[0]!, `soak ${g}`, members.slice(1)), members: members.map((m) => m.username) });
    }
    const groupOf = new Map<string, (typeof groups)[number]>();
    for (const g of groups) for (const m of g.members) groupOf.set(m, g);

    const counts: SoakResult['counts'] = { rounds: 0, logins: 0, logouts: 0, stops: 0, drops: 0, vanished: 0, vanishedClosedByServer: 0, sends: 0, groupSends: 0, mediaSends: 0, syncs: 0, sendErrors: 0 };
    const errors: string[] = [];
    // Before traffic: the server's descriptors without the setup's keep-alive sockets (closed here).
    dropIdleSockets();
    await sleep(1000);
    const fdStartPer = fdsNow();
    const kindsStart = kindsNow();
    t0 = performance.now();
    await sample(true);
    const sampler = setInterval(() => void sample().catch((err) => errors.push(`sample: ${(err as Error).message}`)), opt.sampleSeconds * 1000);

    const noteError = (what: string, err: unknown) => {
      if (errors.length < 20) errors.push(`${what}: ${(err as Error)?.message ?? String(err)}`);
    };
    const latencies: number[][] = [];
    /** Acknowledged sends by msgId: who sent it and whose logs must hold it. */
    const acked = new Map<string, { from: string; clientMsgId: string; owners: string[] }>();
    const endAt = performance.now() + opt.seconds * 1000;
    const transports: TransportName[] = ['tcp', 'ws', 'http'];

    const actor = async (u: SimUser, i: number) => {
      const peer = users[(i + 1) % users.length]!.username;
      const group = groupOf.get(u.username);
      for (let round = 0; performance.now() < endAt; round++) {
        counts.rounds++;
        const transport = transports[(i + round) % 3]!;
        const client = new SynchatClient({
          baseUrl: base,
          connectors: transport === 'tcp' ? [tcpConnector()] : transport === 'ws' ? [nodeWebSocketConnector()] : [],
          backoff: { baseMs: 100, maxMs: 2000 },
          synccheckTimeoutMs: 25_000,
        });
        try {
          await client.login(u.username, PASSWORD, { deviceId: `soak-${round % 4}` });
          counts.logins++;
          await client.start();
          await client.whenOnline();
          const roundEnd = Math.min(endAt, performance.now() + opt.roundSeconds * 1000 * (0.5 + Math.random()));
          for (let n = 0; performance.now() < roundEnd; n++) {
            const toGroup = group && n % 3 === 2;
            const to = toGroup ? group.id : peer;
            const owners = toGroup ? group.members : [u.username, peer];
            const t = performance.now();
            try {
              let msgId: string;
              let clientMsgId = '';
              if (n % 10 === 7) {
                const a = await client.media().sendFile(to, randomBytes(2048 + Math.floor(Math.random() * 8192)), `soak-${n}.bin`);
                msgId = a.msgId;
                counts.mediaSends++;
              } else {
                const item = await client.sendText(to, `soak ${u.username} ${round}.${n}`);
                msgId = item.msgId!;
                clientMsgId = item.clientMsgId;
              }
              const ms = performance.now() - t;
              const bucket = Math.floor((t - t0) / 1000 / opt.bucketSeconds);
              (latencies[bucket] ??= []).push(ms);
              acked.set(msgId, { from: u.username, clientMsgId, owners });
              counts.sends++;
              if (toGroup) counts.groupSends++;
            } catch (err) {
              counts.sendErrors++;
              noteError(`send ${u.username}→${to}`, err);
            }
            if (n % 5 === 4) {
              await client.sync().then(() => counts.syncs++, (err) => noteError('sync', err));
            }
            await sleep(opt.sendGapMs * (0.5 + Math.random()));
          }
          const how = round % 3;
          if (how === 0) {
            await client.logout();
            counts.logouts++;
          } else if (how === 1) {
            await client.close();
            counts.stops++;
          } else {
            // Dropped: the client stops without logging out; its session stays valid and unused.
            await client.stop();
            counts.drops++;
          }
        } catch (err) {
          noteError(`round ${u.username}/${transport}`, err);
          await client.close().catch(() => undefined);
          await sleep(500);
        }
      }
    };

    // Vanishers: every few seconds a fresh session's device appears over TCP, WS or long-poll and goes silent.
    const vanisher = async () => {
      for (let k = 0; performance.now() < endAt; k++) {
        await sleep(Math.max(1000, (opt.roundSeconds * 1000) / 4));
        if (performance.now() >= endAt) break;
        const u = users[k % users.length]!;
        try {
          const l = await call(base, '/api/login', { username: u.username, password: PASSWORD, deviceId: `vanish-${k % 3}` });
          if (l.ret !== 0) throw new Error(`login ret ${l.ret}`);
          counts.logins++;
          const kind = k % 3;
          vanished.push(kind === 2 ? await vanishPoll(server, l.sid, l.syncKey) : await vanishLong(kind === 0 ? 'tcp' : 'ws', server, l.sid));
          counts.vanished++;
        } catch (err) {
          noteError('vanish', err);
        }
      }
    };

    const progress = setInterval(() => log(`soak ${Math.round((performance.now() - t0) / 1000)} s: ${counts.sends} sends, ${counts.rounds} rounds, ${counts.vanished} vanished, errors ${counts.sendErrors + errors.length}`), 60_000);
    await Promise.all([...users.map((u, i) => actor(u, i)), vanisher()]);
    clearInterval(progress);
    counts.vanishedClosedByServer = vanished.filter((v) => v.isClosed).length;
    for (const v of vanished) v.destroy();

    // Every acknowledged send, in each log it belongs to: once.
    const copies = new Map<string, Map<string, number>>();
    const byClientId = new Map<string, number>();
    let firstProblem = '';
    for (const u of users) {
      const seen = new Map<string, number>();
      let key = 0;
      for (;;) {
        const r = await call(base, '/api/sync', { syncKey: key }, u.sids[0]);
        if (r.ret !== 0) throw new Error(`verification sync of ${u.username}: ret ${r.ret} ${r.errMsg ?? ''}`);
        for (const e of r.entries) {
          if (e.kind !== 'msg') continue;
          seen.set(e.msgId, (seen.get(e.msgId) ?? 0) + 1);
          const k = `${u.username}|${e.from}|${e.clientMsgId}`;
          byClientId.set(k, (byClientId.get(k) ?? 0) + 1);
        }
        key = r.syncKey;
        if (!r.continueFlag) break;
      }
      copies.set(u.username, seen);
    }
    let expectedCopies = 0;
    let lost = 0;
    let doubled = 0;
    for (const [msgId, s] of acked) {
      for (const owner of new Set(s.owners)) {
        expectedCopies++;
        const n = copies.get(owner)?.get(msgId) ?? 0;
        if (n === 0) lost++;
        if (n > 1) doubled++;
        if (n !== 1 && !firstProblem) firstProblem = `${msgId} from ${s.from} found ${n}× in ${owner}'s log`;
      }
    }
    for (const [k, n] of byClientId) {
      if (n > 1) {
        doubled++;
        if (!firstProblem) firstProblem = `clientMsgId ${k} under ${n} msgIds`;
      }
    }

    // After every client left: the SDK clients' fetch (Node's global undici agent) keeps idle keep-alive sockets for
    // as long as the server's Keep-Alive hint (72 s), and ours (proc.ts `call`) for good; both close here, as a
    // leaving browser's would. Then a moment for the server to close its side, and the descriptors again.
    clearInterval(sampler);
    dropIdleSockets();
    await closeGlobalFetchAgent();
    await sleep(6000);
    await sample(true);
    const fdEndPer = fdsNow();
    const kindsEnd = kindsNow();
    const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

    const latency = latencies.map((l, b) => {
      const sorted = (l ?? []).slice().sort((a, c) => a - c);
      return { t: b * opt.bucketSeconds, sends: sorted.length, p50Ms: +quantile(sorted, 0.5).toFixed(1), p99Ms: +quantile(sorted, 0.99).toFixed(1) };
    });
    return {
      settings: { seconds: opt.seconds, users: opt.users, workers: opt.workers, sampleSeconds: opt.sampleSeconds, bucketSeconds: opt.bucketSeconds, sendGapMs: opt.sendGapMs, roundSeconds: opt.roundSeconds, groups: groups.length, ...server.settings },
      processes,
      latency,
      counts,
      check: { acked: acked.size, expectedCopies, lost, doubled, firstProblem },
      fds: { start: sum(fdStartPer), end: sum(fdEndPer), perProcessStart: fdStartPer, perProcessEnd: fdEndPer, kindsStart, kindsEnd },
      errors,
    };
  } finally {
    for (const v of vanished) v.destroy();
    for (const i of inspectors) i.close();
    await server.stop();
  }
}

/** Slopes of RSS and heap over the second half of the run, per process, in MiB per hour. */
export function secondHalfSlopes(result: SoakResult): { role: string; rssMiBPerHour: number; heapMiBPerHour: number; liveHeapMiBPerHour: number; samples: number }[] {
  const seconds = result.settings.seconds as number;
  return result.processes.map((p) => {
    const s = p.samples.filter((x) => x.t >= seconds / 2 && x.t <= seconds);
    const perHour = (pick: (x: ProcSample) => number | undefined) =>
      +slope(s.filter((x) => pick(x) !== undefined).map((x) => ({ x: x.t / 3600, y: pick(x)! }))).toFixed(2);
    return { role: p.role, rssMiBPerHour: perHour((x) => x.rssMiB), heapMiBPerHour: perHour((x) => x.heapUsedMiB), liveHeapMiBPerHour: perHour((x) => x.heapLiveMiB), samples: s.length };
  });
}

