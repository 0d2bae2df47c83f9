// RedisNodeReports (src/bus/redis/redis-node-reports.ts): every live node's latest dashboard report, through Redis.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisNodeReports, type RedisLogger } from '../../src/bus/redis/index.ts';
import { assertEntryRemoved, readLiveEntry, writeAsPreviousVersion } from '../helpers/redis-entries.ts';
import { REDIS_URL, requireRedis } from '../helpers/services.ts';
import { waitUntil } from '../helpers/wait.ts';

const skip = await requireRedis();
/** Every key of this run carries its own prefix. */
const PREFIX = `synchat-test:${process.pid}:${Date.now().toString(36)}:`;
const opened: RedisNodeReports[] = [];
const quiet: RedisLogger = { info() {}, warn() {}, error() {} };

after(async () => {
  for (const r of opened) await r.stop().catch(() => undefined);
  if (skip) return;
  const admin = new Redis(REDIS_URL);
  const keys = await admin.keys(`${PREFIX}*`);
  if (keys.length > 0) await admin.del(...keys);
  admin.disconnect();
});

function open(prefix: string, maxBytes?: number): RedisNodeReports {
  const r = new RedisNodeReports({ redis: REDIS_URL, logger: quiet, prefix: PREFIX + prefix, intervalMs: 100, ttlMs: 500, timeoutMs: 300, ...(maxBytes ? { maxBytes } : {}) });
  opened.push(r);
  return r;
}

describe('RedisNodeReports', { skip, timeout: 30_000 }, () => {
  it("gives each node the others' latest reports, not its own, and forgets a node that stops", async () => {
    const counts = { a: 0, b: 0 };
    const [a, b] = [open('r1:'), open('r1:')];
    await a.start('a', async () => JSON.stringify({ node: 'a', n: ++counts.a }));
    await b.start('b', async () => JSON.stringify({ node: 'b', n: ++counts.b }));
    await waitUntil(() => a.others().length === 1 && b.others().length === 1, 'each sees the other', 10_000);
    assert.equal(JSON.parse(a.others()[0]!).node, 'b');
    assert.equal(JSON.parse(b.others()[0]!).node, 'a');
    // Rewritten every interval: a reads b's newer reports.
    const seen = JSON.parse(a.others()[0]!).n as number;
    await waitUntil(() => JSON.parse(a.others()[0] ?? '{"n":0}').n > seen, "b's next report on a", 10_000);
    await b.stop();
    await waitUntil(() => a.others().length === 0, 'b gone from a', 10_000);
  });

  it("keeps its report at <prefix>report:<id> in the set <prefix>reports, where a node of the previous version reads and writes theirs (a rolling upgrade)", async (t) => {
    const admin = new Redis(REDIS_URL);
    t.after(() => admin.disconnect());
    const prefix = PREFIX + 'r3:';
    const keys = { entryPrefix: prefix + 'report:', indexKey: prefix + 'reports' };
    await writeAsPreviousVersion(admin, keys, 'old', JSON.stringify({ node: 'old' }), 60_000);
    const r = new RedisNodeReports({ redis: REDIS_URL, logger: quiet, prefix, intervalMs: 60_000, ttlMs: 60_000, timeoutMs: 1000 });
    opened.push(r);
    await r.start('new', async () => JSON.stringify({ node: 'new' }));
    assert.deepEqual(r.others(), [JSON.stringify({ node: 'old' })]);
    assert.equal(await readLiveEntry(admin, keys, 'new', 60_000, ['new', 'old']), JSON.stringify({ node: 'new' }));
    await r.stop();
    await assertEntryRemoved(admin, keys, 'new', ['old']);
  });

  it('does not write a report over its bound', async () => {
    // small would keep big's report (its own bound is 1,000 B); big may not write one over 100 B.
    const [small, big] = [open('r2:', 1000), open('r2:', 100)];
    await small.start('small', async () => JSON.stringify({ node: 'small' }));
    await big.start('big', async () => JSON.stringify({ node: 'big', pad: 'x'.repeat(200) }));
    await waitUntil(() => big.others().length === 1, "small's report on big", 10_000);
    // Several rounds later small still has nothing from big: big's report never reached Redis.
    await small.refresh();
    await big.refresh();
    await small.refresh();
    assert.deepEqual(small.others(), []);
  });
});
