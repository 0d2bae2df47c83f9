// The Redis adapters against a real Redis, never mocks: the bus routes news by held user between nodes, keeps a
// publisher's order, broadcasts session ends and survives a Redis restart (a gap, then delivery again); the
// throttles are shared between nodes and fall back to memory when Redis is gone; the directory lists live nodes
// (at the keys nodes of the previous version use) and forgets a stopped or silent one. Skipped without Redis at 127.0.0.1:6379, failing instead under CI=true.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { BusEvent, NewsEvent } from '../../src/core/ports.ts';
import { openRedis, RedisBus, RedisDirectory, RedisRateCounters, type DirectoryGateway, type RedisBusOptions, type RedisLogger } from '../../src/bus/redis/index.ts';
import { backoffDelayMs } from '../../src/core/backoff.ts';
import { LocalRateCounters } from '../../src/service/rate-limit.ts';
import { startOwnRedis, type OwnRedis } from '../helpers/nodes.ts';
import { assertEntryRemoved, readLiveEntry, writeAsPreviousVersion } from '../helpers/redis-entries.ts';
import { REDIS_URL, requireRedis } from '../helpers/services.ts';
import { waitUntil } from '../helpers/wait.ts';

/** Polls `check` every 10 ms until it holds; fails after `timeoutMs` (10 s unless given). */
const until = (check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> => waitUntil(check, what, timeoutMs);

const skip = await requireRedis();
const REDIS_SERVER = '/usr/bin/redis-server';
const skipOwn = skip ?? ownServerSkip();

function ownServerSkip(): string | undefined {
  if (existsSync(REDIS_SERVER)) return undefined;
  if (process.env.CI === 'true') throw new Error(`${REDIS_SERVER} is missing; CI=true requires it`);
  return `${REDIS_SERVER} is missing: skipped`;
}

/** Pub/sub channels ignore the db index: every name of this run carries its own prefix. */
const PREFIX = `synchat-test:${process.pid}:${Date.now().toString(36)}:`;
const cleanups: (() => Promise<unknown>)[] = [];

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  if (skip) return;
  const admin = new Redis(REDIS_URL);
  const keys = await admin.keys(`${PREFIX}*`);
  if (keys.length > 0) await admin.del(...keys);
  admin.disconnect();
});

/** A logger that keeps its lines, so a test can count what an outage logged. */
function testLogger(): RedisLogger & { lines: { level: string; msg: string }[] } {
  const lines: { level: string; msg: string }[] = [];
  const at = (level: string) => (_obj: object, msg?: string) => void lines.push({ level, msg: msg ?? '' });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let nodes = 0;

/** A bus of a new node (closed after the run) and every event its listeners get, one by one. */
async function openBus(options: Partial<RedisBusOptions> = {}): Promise<{ bus: RedisBus; got: BusEvent[]; logger: ReturnType<typeof testLogger> }> {
  const logger = testLogger();
  const bus = new RedisBus({ url: REDIS_URL, nodeId: `node-${nodes++}`, logger, prefix: PREFIX, ...options });
  cleanups.push(() => bus.close());
  const got: BusEvent[] = [];
  bus.subscribe((events) => got.push(...events));
  await until(() => bus.isReady, 'the bus to connect');
  await bus.whenHeld();
  return { bus, got, logger };
}

const news = (uin: number, head: number): BusEvent => ({
  type: 'news',
  news: { uin, prevSeq: head - 1, head, selector: 1, entries: [`{"seq":${head},"kind":"msg"}`] },
});
const newsOf = (got: BusEvent[], uin: number): NewsEvent[] => got.flatMap((e) => (e.type === 'news' && e.news.uin === uin ? [e.news] : []));

/** A redis-server of the test's own (test/helpers/nodes.ts), killed when the file's tests end. */
async function startOwnServer(): Promise<OwnRedis> {
  const own = await startOwnRedis();
  cleanups.push(() => own.kill());
  return own;
}

describe('RedisBus between two nodes', { skip, timeout: 60_000 }, () => {
  it('brings news of a held user to the node holding it, and news of other users to no one', async () => {
    const a = await openBus();
    const b = await openBus();
    b.bus.hold(101);
    await b.bus.whenHeld();
    a.bus.publish([news(102, 1)]);
    a.bus.publish([news(101, 1)]);
    await until(() => b.got.length > 0, 'news of 101 on b');
    await sleep(50);
    // Redis delivers one publisher's messages in order: had news of 102 reached b, it would have come first.
    assert.deepEqual(b.got, [news(101, 1)]);
  });

  it('delivers a node its own events at once, in order, and never again from Redis', async () => {
    const a = await openBus();
    const b = await openBus();
    a.bus.hold(201);
    await a.bus.whenHeld();
    a.bus.publish([news(201, 1), news(201, 2)]);
    assert.deepEqual(a.got, [news(201, 1), news(201, 2)], 'delivered synchronously, before publish returned');
    b.bus.publish([news(201, 3)]);
    await until(() => a.got.length === 3, "b's news on a");
    await sleep(50);
    assert.deepEqual(newsOf(a.got, 201).map((n) => n.head), [1, 2, 3]);
    assert.equal(a.bus.stats.received, 1);
  });

  it('cuts a fanout down to the members each node holds, each with the seq its log gave it', async () => {
    const a = await openBus();
    const b = await openBus();
    b.bus.hold(302);
    b.bus.hold(304);
    await b.bus.whenHeld();
    const fields = '{"msgId":7,"content":"hi \\"all\\" ☃"}';
    a.bus.publish([{ type: 'fanout', fanout: { kind: 'msg', selector: 1, fields, uins: [301, 302, 303, 304, 305], seqs: [10, 20, 30, 40, 50] } }]);
    await until(() => b.got.length === 2, 'two members on b');
    await sleep(50);
    assert.deepEqual(b.got, [
      { type: 'fanout', fanout: { kind: 'msg', selector: 1, fields, uins: [302], seqs: [20] } },
      { type: 'fanout', fanout: { kind: 'msg', selector: 1, fields, uins: [304], seqs: [40] } },
    ]);
  });

  it('brings every session end to every node, whatever it holds', async () => {
    const [a, b, c] = [await openBus(), await openBus(), await openBus()];
    const ended: BusEvent = { type: 'sessionEnded', ended: { sessionId: 's-1', uin: 401, ret: 1101 } };
    a.bus.publish([ended]);
    await until(() => b.got.length === 1 && c.got.length === 1, 'the session end on b and c');
    assert.deepEqual([a.got, b.got, c.got], [[ended], [ended], [ended]]);
  });

  it('subscribes on the first hold and unsubscribes on the last release; a second release of one hold changes nothing', async () => {
    const { bus } = await openBus();
    const admin = new Redis(REDIS_URL);
    cleanups.push(async () => admin.disconnect());
    const subscribers = async (uin: number) => Number(((await admin.pubsub('NUMSUB', `${PREFIX}u:${uin}`)) as [string, number])[1]);

    const first = bus.hold(501);
    const second = bus.hold(501);
    await bus.whenHeld();
    assert.equal(await subscribers(501), 1);
    first();
    first();
    await bus.whenHeld();
    assert.equal(await subscribers(501), 1, 'one hold is left');
    second();
    await bus.whenHeld();
    assert.equal(await subscribers(501), 0);

    // Held and released within one turn: nothing is sent.
    bus.hold(502)();
    await bus.whenHeld();
    assert.equal(await subscribers(502), 0);
    // Released and held again within one turn: the subscription stays.
    const third = bus.hold(503);
    await bus.whenHeld();
    third();
    const fourth = bus.hold(503);
    await bus.whenHeld();
    assert.equal(await subscribers(503), 1);
    fourth();
  });

  it("times each message from another node by its publisher's clock (the bus lag metric), and reads a message without one", async () => {
    const lags: number[] = [];
    const a = await openBus({ onReceived: (ms) => lags.push(ms) });
    const b = await openBus();
    a.bus.hold(251);
    await a.bus.whenHeld();
    a.bus.publish([news(251, 1)]);
    b.bus.publish([news(251, 2)]);
    b.bus.publish([{ type: 'fanout', fanout: { kind: 'msg', selector: 1, fields: '{"to":"@@1"}', uins: [251], seqs: [3], committedAt: 1234 } }]);
    await until(() => a.got.length === 3, "b's news and fanout on a");
    assert.equal(lags.length, 2, 'one lag per message from b, none for a\'s own');
    assert.ok(lags.every((ms) => ms >= 0 && ms < 60_000), `lags ${lags}`);
    const fanout = a.got[2]!;
    assert.equal(fanout.type === 'fanout' && fanout.fanout.committedAt, 1234, 'the fanout script carries committedAt');
    // A node of the earlier format (`<nodeId>\n…`, no publish time) is still understood, untimed.
    const raw = new Redis(REDIS_URL);
    cleanups.push(async () => raw.disconnect());
    await raw.publish(`${PREFIX}u:251`, `old-node\n[${JSON.stringify(news(251, 4))}]`);
    await until(() => a.got.length === 4, 'the old-format message on a');
    assert.equal(lags.length, 2);
  });

  it("keeps a publisher's order under a burst of news and fanouts", async () => {
    const a = await openBus();
    const b = await openBus();
    b.bus.hold(601);
    await b.bus.whenHeld();
    let seq = 0;
    for (let i = 0; i < 500; i++) {
      const events: BusEvent[] = [news(601, ++seq), news(602, seq)];
      if (i % 3 === 0) events.push({ type: 'fanout', fanout: { kind: 'msg', selector: 1, fields: '{}', uins: [600, 601], seqs: [i, ++seq] } });
      events.push(news(601, ++seq));
      a.bus.publish(events);
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    await until(() => b.got.length === seq, `all ${seq} events of 601 on b`);
    const heads = b.got.map((e) => (e.type === 'news' ? e.news.head : e.type === 'fanout' ? e.fanout.seqs[0] : -1));
    assert.deepEqual(heads, Array.from({ length: seq }, (_, i) => i + 1));
  });
});

describe('RedisBus across a Redis restart', { skip: skipOwn, timeout: 60_000 }, () => {
  it('never throws while Redis is down, reports a gap once it is back, and delivers for every held user again', async () => {
    const server = await startOwnServer();
    const options = { url: server.url, reconnectMaxMs: 200 };
    const a = await openBus(options);
    const b = await openBus(options);
    let gapsOnB = 0;
    b.bus.onGap(() => gapsOnB++);
    b.bus.hold(701);
    await b.bus.whenHeld();
    assert.equal(gapsOnB, 0, 'the first connect is no gap');

    let seq = 0;
    let isPublishing = true;
    const traffic = (async () => {
      while (isPublishing) {
        a.bus.publish([news(701, ++seq)]);
        await sleep(2);
      }
    })();
    await until(() => b.got.length > 10, 'traffic before the kill');
    await server.kill();
    b.bus.hold(702); // taken while Redis is down
    await sleep(300);
    await server.start();
    await until(() => gapsOnB >= 1, 'a gap on b');
    await until(() => a.bus.isReady, 'a to reconnect');
    isPublishing = false;
    await traffic;

    assert.ok(a.bus.stats.dropped > 0, 'events were dropped while Redis was down');
    assert.equal(a.logger.lines.filter((l) => l.msg.includes('events for other nodes are dropped')).length, 1, 'the drops are logged once');
    await b.bus.whenHeld();
    a.bus.publish([news(701, ++seq), news(702, 1)]);
    await until(() => newsOf(b.got, 702).length === 1, 'news of 702 after the restart');
    assert.deepEqual(b.got.slice(-2), [news(701, seq), news(702, 1)]);
  });

  it('tells every node to catch up when a publisher dropped events that their subscribers could not notice', async () => {
    const server = await startOwnServer();
    const a = await openBus({ url: server.url, reconnectMaxMs: 200, maxInFlightBytes: 0 });
    const b = await openBus({ url: server.url });
    let gapsOnB = 0;
    b.bus.onGap(() => gapsOnB++);
    // With no room in flight, a burst in one turn drops all but its first publish while b's link stays up.
    for (let i = 1; i <= 5; i++) a.bus.publish([news(801, i)]);
    assert.equal(a.bus.stats.dropped, 4);
    await sleep(50);
    a.bus.publish([news(801, 6)]);
    await until(() => gapsOnB === 1, 'the gap notice on b');
  });
});

describe('RedisRateCounters', { skip: skipOwn, timeout: 60_000 }, () => {
  it('counts one window for every node and tells each the same retry-after', async () => {
    const logger = testLogger();
    const [one, two] = [0, 1].map(() => new RedisRateCounters({ redis: REDIS_URL, fallback: new LocalRateCounters(), logger, prefix: PREFIX }));
    cleanups.push(() => one!.close(), () => two!.close());
    const c1 = one!.counter('logins', 3, 60_000);
    const c2 = two!.counter('logins', 3, 60_000);
    assert.deepEqual([await c1.hit('alice', 0), await c2.hit('alice', 0), await c1.hit('alice', 0)], [0, 0, 0]);
    assert.equal(await c2.retryAfterSec('alice', 0) > 0, true, 'the limit is reached');
    const over = await c2.hit('alice', 0);
    assert.ok(over >= 59 && over <= 60, `retry after ${over} s`);
    assert.equal(await c1.retryAfterSec('bob', 0), 0, 'keys are separate');
    await c1.clear('alice');
    assert.equal(await c2.retryAfterSec('alice', 0), 0);
    assert.equal(await c2.hit('alice', 0), 0);
    assert.equal(logger.lines.length, 0);
  });

  it('answers at least 1 s when less than a second is left, and starts a new window when it expires', async () => {
    const counters = new RedisRateCounters({ redis: REDIS_URL, fallback: new LocalRateCounters(), logger: testLogger(), prefix: PREFIX });
    cleanups.push(() => counters.close());
    const c = counters.counter('sends', 1, 300);
    assert.equal(await c.hit('u', 0), 0);
    assert.equal(await c.hit('u', 0), 1);
    await sleep(350);
    assert.equal(await c.retryAfterSec('u', 0), 0);
    assert.equal(await c.hit('u', 0), 0);
  });

  it('gives every node the same growing waits as backoffDelayMs, and forgets them at clear', async () => {
    const [one, two] = [0, 1].map(() => new RedisRateCounters({ redis: REDIS_URL, fallback: new LocalRateCounters(), logger: testLogger(), prefix: PREFIX }));
    cleanups.push(() => one!.close(), () => two!.close());
    const policy = { freeFailures: 2, baseDelayMs: 1000, maxDelayMs: 4000, forgetMs: 60_000 };
    const b1 = one!.backoff('loginFailuresByIp', policy);
    const b2 = two!.backoff('loginFailuresByIp', policy);
    const waits = [];
    for (let i = 0; i < 6; i++) waits.push(await (i % 2 ? b2 : b1).fail('203.0.113.1', 0));
    assert.deepEqual(waits, [1, 2, 3, 4, 5, 6].map((n) => backoffDelayMs(n, policy) / 1000));
    assert.deepEqual(waits, [0, 0, 1, 2, 4, 4]);
    const left = await b1.retryAfterSec('203.0.113.1', 0);
    assert.ok(left >= 3 && left <= 4, `${left} s left`);
    assert.equal(await b2.retryAfterSec('203.0.113.2', 0), 0, 'keys are separate');
    await b2.clear('203.0.113.1');
    assert.equal(await b1.retryAfterSec('203.0.113.1', 0), 0);
    assert.equal(await b1.fail('203.0.113.1', 0), 0, 'the free failures are back');
  });

  it('lets a backoff wait run out and forgets failures after forgetMs', async () => {
    const counters = new RedisRateCounters({ redis: REDIS_URL, fallback: new LocalRateCounters(), logger: testLogger(), prefix: PREFIX });
    cleanups.push(() => counters.close());
    const b = counters.backoff('loginFailuresByNameAndIp', { freeFailures: 1, baseDelayMs: 200, maxDelayMs: 200, forgetMs: 500 });
    assert.equal(await b.fail('k', 0), 0);
    assert.equal(await b.fail('k', 0), 1, 'a 200 ms wait is announced as 1 s');
    await sleep(250);
    assert.equal(await b.retryAfterSec('k', 0), 0, 'the wait ran out');
    await sleep(400);
    assert.equal(await b.fail('k', 0), 0, 'quiet for forgetMs: the count started over');
  });

  it('answers from the fallback while Redis is down, and from Redis again once it is back', async () => {
    const server = await startOwnServer();
    const logger = testLogger();
    const conn = openRedis(server.url, { role: 'test', logger, reconnectMaxMs: 200 });
    cleanups.push(async () => conn.disconnect());
    const counters = new RedisRateCounters({ redis: conn, fallback: new LocalRateCounters(), logger, prefix: PREFIX });
    const c = counters.counter('logins', 2, 60_000);
    await until(() => conn.status === 'ready', 'the connection');
    assert.deepEqual([await c.hit('carol', 1000), await c.hit('carol', 1000)], [0, 0]);

    await server.kill();
    // The fallback starts from nothing: two more hits pass, the third is over its limit.
    assert.deepEqual([await c.hit('carol', 1000), await c.hit('carol', 1000)], [0, 0]);
    assert.equal(await c.hit('carol', 1000), 60);
    assert.equal(await c.retryAfterSec('carol', 31_000), 30);
    assert.equal(counters.isFallingBack, true);
    assert.equal(logger.lines.filter((l) => l.msg.startsWith('redis rate counters: Redis unreachable')).length, 1);

    await server.start(); // empty: it keeps nothing on disk
    await until(() => conn.status === 'ready', 'the reconnect');
    assert.equal(await c.retryAfterSec('carol', 1000), 0, 'Redis answers again (its window is new)');
    assert.equal(counters.isFallingBack, false);
    await counters.close();
  });
});

describe('RedisDirectory', { skip, timeout: 60_000 }, () => {
  const gw = (node: string): DirectoryGateway[] => [
    { transport: 'tcp', url: `tcp://${node}:1` },
    { transport: 'http', url: `http://${node}:2` },
  ];
  const timings = { ttlMs: 400, refreshMs: 100, staleMs: 1000, timeoutMs: 300 };
  const open = (prefix: string, redis: Redis | string = REDIS_URL, load?: () => number) => {
    const directory = new RedisDirectory({ redis, logger: testLogger(), prefix: PREFIX + prefix, ...timings, ...(load ? { load } : {}) });
    cleanups.push(() => directory.stop());
    return directory;
  };

  it("lists its own gateways first, then every other live node's, and forgets a node that stops", async () => {
    const [a, b, c] = [open('dir1:'), open('dir1:'), open('dir1:')];
    await a.start({ nodeId: 'a', gateways: gw('a') });
    await b.start({ nodeId: 'b', gateways: gw('b') });
    await c.start({ nodeId: 'c', gateways: gw('c') });
    await until(() => a.gateways().length === 6 && c.gateways().length === 6, 'three nodes listed');
    assert.deepEqual(a.gateways(), [...gw('a'), ...gw('b'), ...gw('c')]);
    assert.deepEqual(c.gateways(), [...gw('c'), ...gw('a'), ...gw('b')]);
    await b.stop();
    await until(() => a.gateways().length === 4, 'b gone from a');
    assert.deepEqual(a.gateways(), [...gw('a'), ...gw('c')]);
  });

  it('lists the least-loaded node first (its own load read now, the others\' as of their last refresh), and lists the gateways given for itself', async () => {
    const loads: Record<string, number> = { a: 5, b: 1, c: 3 };
    const [a, b, c] = (['a', 'b', 'c'] as const).map((n) => open('dir3:', REDIS_URL, () => loads[n]!));
    await a!.start({ nodeId: 'a', gateways: gw('a') });
    await b!.start({ nodeId: 'b', gateways: gw('b') });
    await c!.start({ nodeId: 'c', gateways: gw('c') });
    await until(() => a!.gateways().length === 6, 'three nodes listed');
    await a!.refresh();
    assert.deepEqual(a!.gateways(), [...gw('b'), ...gw('c'), ...gw('a')]);
    loads.a = 0;
    assert.deepEqual(a!.gateways(), [...gw('a'), ...gw('b'), ...gw('c')], 'its own load is read at once');
    loads.b = 9;
    await b!.refresh();
    await a!.refresh();
    assert.deepEqual(a!.gateways(gw('host-a')), [...gw('host-a'), ...gw('c'), ...gw('b')], 'another node\'s load as it last wrote it');
  });

  it("keeps its entry at <prefix>node:<id> in the set <prefix>nodes, where a node of the previous version reads and writes theirs (a rolling upgrade)", async () => {
    const admin = new Redis(REDIS_URL);
    cleanups.push(async () => admin.disconnect());
    const prefix = PREFIX + 'dir4:';
    const keys = { entryPrefix: prefix + 'node:', indexKey: prefix + 'nodes' };
    await writeAsPreviousVersion(admin, keys, 'old', JSON.stringify({ nodeId: 'old', gateways: gw('old'), load: 0 }), 60_000);
    const directory = new RedisDirectory({ redis: REDIS_URL, logger: testLogger(), prefix, ttlMs: 60_000, refreshMs: 60_000, timeoutMs: 1000 });
    cleanups.push(() => directory.stop());
    await directory.start({ nodeId: 'new', gateways: gw('new') });
    assert.deepEqual(directory.gateways(), [...gw('new'), ...gw('old')]);
    const entry = await readLiveEntry(admin, keys, 'new', 60_000, ['new', 'old']);
    assert.deepEqual(JSON.parse(entry ?? 'null'), { nodeId: 'new', gateways: gw('new'), load: 0 });
    await directory.stop();
    await assertEntryRemoved(admin, keys, 'new', ['old']);
  });

  it('drops a node that stops refreshing within its TTL, and keeps serving the last known list for staleMs while its own Redis link is down', async () => {
    const a = open('dir2:');
    const conn = openRedis(REDIS_URL, { role: 'test', logger: testLogger() });
    await until(() => conn.status === 'ready', 'the connection');
    const silent = open('dir2:', conn);
    await a.start({ nodeId: 'a2', gateways: gw('a2') });
    await silent.start({ nodeId: 'silent', gateways: gw('silent') });
    await until(() => a.gateways().length === 4 && silent.gateways().length === 4, 'both listed');

    conn.disconnect(); // the node is cut off from Redis: it can neither refresh nor remove its entry
    await until(() => a.gateways().length === 2, 'the silent node expired on a', 3000);
    assert.deepEqual(silent.gateways(), [...gw('silent'), ...gw('a2')], 'the last known list, while fresh');
    await until(() => silent.gateways().length === 2, 'the stale list dropped', 3000);
    assert.deepEqual(silent.gateways(), gw('silent'));
  });
});
