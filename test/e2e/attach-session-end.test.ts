// A session that ends while an attach of it is in flight (an AUTH on a long connection, a long-poll synccheck)
// must still end that connection or poll: the end must not fall between the service's session check and the
// listener's registration in its process's hub (docs/architecture.md "Attach"). Each round starts a logout and,
// while it is in flight, sends AUTHs (or polls) of the same session one per event-loop turn, so some attaches
// are in flight when the logout commits. Every one must end with the session's end (1100): an AUTH_OK is
// followed by ERROR 1100 and the close, a poll answers 1100. Without the fix some AUTH_OKs stayed open and some
// polls answered 0 at their timeout. Run in one process, with two gateway processes (SYNCHAT_WORKERS=2), and on
// two nodes (PostgreSQL, Redis) with the logout served by the other node.
// Without the fix, the two-node case failed on every transport (140 of 228 TCP and 159 of 233 WebSocket AUTH_OKs
// stayed open, 5 of 106 polls answered 0 at their timeout); the gateway case failed on every transport (on TCP 35 of 240 AUTH_OKs stayed open, on
// WebSocket 23, 3 of 100 polls answered 0 at their timeout); the one-process case failed on TCP and WebSocket
// with STORE_UNDER_TEST=postgres, whose reads are a network round trip. On SQLite, whose reads are synchronous,
// a one-process attach runs within one event-loop turn and cannot race a commit: that case guards the fix.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OP } from '../../src/protocol/index.ts';
import { api, startServer, userDevice, type Device, type TestServer } from '../helpers/server.ts';
import { nodesForSuite } from '../helpers/nodes.ts';
import { spawnGatewayServer, type GatewayServer } from '../helpers/process.ts';
import { requirePostgres, requireRedis } from '../helpers/services.ts';
import { TRANSPORTS, connectWire, type WireClient, type WireTransport } from '../helpers/wire.ts';

const nodesSkip = (await requirePostgres()) ?? (await requireRedis());

/** Rounds per case: each is one logout raced by a burst of attaches. */
const ROUNDS = 6;
/** Attaches per round: sent one per event-loop turn from the moment the logout is sent until it answers. */
const PER_ROUND = 40;
/** Sessions (devices of one user) polling in each round of the long-poll case. */
const POLL_SESSIONS = 20;
/** How long an attach that answered may take to be told of the end (it is told at once with the fix). */
const END_WITHIN_MS = 3000;
/** A poll's timeout: a poll that missed the end answers 0 after it. */
const POLL_TIMEOUT_MS = END_WITHIN_MS + 1000;

/** Where the attaches go, and the node the logout goes to (another node in the two-node case). */
interface Target {
  url: string;
  ports: { httpPort: number; tcpPort: number };
  logoutUrl: string;
}

const turn = () => new Promise<void>((r) => setImmediate(r));

/**
 * Sends `attach(i)` once per event-loop turn while `dev`'s logout (`everywhere`: of all the user's sessions) is in
 * flight, at most `max`, the first before it is sent. Returns how many were sent.
 */
async function raceLogout(t: Target, dev: Device, attach: (i: number) => void, everywhere = false, max = PER_ROUND): Promise<number> {
  let isAnswered = false;
  attach(0);
  const logout = api(t.logoutUrl, '/api/logout', { everywhere }, dev.sid).then((r) => {
    isAnswered = true;
    return r.body.ret;
  });
  let n = 1;
  while (!isAnswered && n < max) {
    attach(n++);
    await turn();
  }
  assert.equal(await logout, 0);
  return n;
}

/** The outcome of one AUTH: refused, or AUTH_OK then the end; 'open' when it stayed open past END_WITHIN_MS. */
async function authOutcome(c: WireClient, seq: number): Promise<string> {
  const first = await c.next((p) => p.seq === seq || p.op === OP.ERROR, 'the AUTH answer');
  if (first.op === OP.ERROR) return `refused ${first.body.ret}`;
  assert.equal(first.op, OP.AUTH_OK);
  const ended = await Promise.race([
    c.nextOp(OP.ERROR).then((p) => `ended ${p.body.ret}`, () => 'closed without ERROR'),
    new Promise<string>((r) => setTimeout(() => r('open'), END_WITHIN_MS)),
  ]);
  c.close();
  return ended;
}

/**
 * The outcome of one poll: 'ended <ret>', 'news' (an attach that read the head after the logout's own entry and
 * before its end answers at once, as a poll sent just before the logout would), or 'parked' (a poll that answered
 * 0 with nothing new at its timeout: it missed the end).
 */
async function pollOutcome(t: Target, dev: Device): Promise<string> {
  const r = await api(t.url, `/api/synccheck?syncKey=${dev.syncKey}&timeout=${POLL_TIMEOUT_MS}`, undefined, dev.sid);
  if (r.body.ret !== 0) return `ended ${r.body.ret}`;
  return r.body.selector > 0 ? 'news' : 'parked';
}

function longConnectionCase(target: () => Target, transport: WireTransport, prefix: string) {
  it(`${transport}: every AUTH raced by its session's logout is refused or ended with 1100`, async (ctx) => {
    const t = target();
    const outcomes = new Map<string, number>();
    for (let round = 0; round < ROUNDS; round++) {
      const dev = await userDevice(t.url, `${prefix}_${transport}`, `dev${round}`);
      const conns = await Promise.all(Array.from({ length: PER_ROUND }, () => connectWire(transport, t.ports)));
      const seqs: number[] = [];
      const sent = await raceLogout(t, dev, (i) => void seqs.push(conns[i]!.send(OP.AUTH, { sid: dev.sid, syncKey: dev.syncKey })));
      for (const c of conns.slice(sent)) c.close();
      const results = await Promise.all(conns.slice(0, sent).map((c, i) => authOutcome(c, seqs[i]!)));
      for (const r of results) outcomes.set(r, (outcomes.get(r) ?? 0) + 1);
    }
    ctx.diagnostic(`outcomes: ${JSON.stringify([...outcomes])}`);
    const bad = [...outcomes].filter(([r]) => r !== 'refused 1100' && r !== 'ended 1100');
    assert.deepEqual(bad, [], `outcomes: ${JSON.stringify([...outcomes])}`);
  });
}

function pollCase(target: () => Target, prefix: string) {
  // A newer poll of a session answers the one before it at once, so each poll is of a session of its own, all of
  // one user, ended together by a logout everywhere.
  it('long-poll: every synccheck raced by a logout everywhere answers 1101 (or news it found first)', async (ctx) => {
    const t = target();
    const outcomes = new Map<string, number>();
    for (let round = 0; round < ROUNDS; round++) {
      const user = `${prefix}_poll${round}`;
      const devs: Device[] = [];
      for (let i = 0; i < POLL_SESSIONS; i++) devs.push(await userDevice(t.url, user, `dev${i}`));
      const loggingOut = await userDevice(t.url, user, 'out');
      const polls: Promise<string>[] = [];
      await raceLogout(t, loggingOut, (i) => polls.push(pollOutcome(t, devs[i]!)), true, POLL_SESSIONS);
      for (const r of await Promise.all(polls)) outcomes.set(r, (outcomes.get(r) ?? 0) + 1);
    }
    ctx.diagnostic(`outcomes: ${JSON.stringify([...outcomes])}`);
    const bad = [...outcomes].filter(([r]) => r !== 'ended 1101' && r !== 'news');
    assert.deepEqual(bad, [], `outcomes: ${JSON.stringify([...outcomes])}`);
  });
}

describe('a session ended while an attach is in flight: one process', () => {
  let server: TestServer;
  const target = (): Target => ({ url: server.url, ports: server, logoutUrl: server.url });
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
  });
  for (const transport of TRANSPORTS) longConnectionCase(target, transport, 'ase1');
  pollCase(target, 'ase1');
});

describe('a session ended while an attach is in flight: two gateway processes', () => {
  let server: GatewayServer;
  const target = (): Target => ({ url: server.url, ports: server.ports, logoutUrl: server.url });
  before(async () => {
    server = await spawnGatewayServer('synchat-attach-end-');
  });
  after(async () => {
    await server.stopAndClean();
  });
  for (const transport of TRANSPORTS) longConnectionCase(target, transport, 'ase2');
  pollCase(target, 'ase2');
});

// Over the bus: the logout is served by node 0 and the attaches by node 1, which learns of the end from Redis's
// session-end channel. Skipped without PostgreSQL and Redis.
describe('a session ended while an attach is in flight: the logout on another node', { skip: nodesSkip }, () => {
  const cluster = nodesForSuite(2);
  const target = (): Target => {
    const [here, there] = cluster().nodes;
    return { url: there!.url, ports: there!, logoutUrl: here!.url };
  };
  for (const transport of TRANSPORTS) longConnectionCase(target, transport, 'ase3');
  pollCase(target, 'ase3');
});
