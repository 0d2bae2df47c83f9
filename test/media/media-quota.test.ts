// The media daily quota is reserved inside the write transaction: parallel inits never reserve past it, on one
// SQLite node and on two nodes sharing one PostgreSQL database (docs/protocol.md "Media").
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { api, startServer, userDevice, type TestServer } from '../helpers/server.ts';
import { createTestDatabase, requirePostgres } from '../helpers/services.ts';

const KiB = 1024;
const FILE_BYTES = 100 * KiB;
const QUOTA_BYTES = 1000 * KiB;
const PARALLEL = 30;

/** Starts `PARALLEL` inits of distinct files at once, spread over `urls`; answers the ret of each. */
async function parallelInits(urls: string[], sid: string): Promise<number[]> {
  const answers = await Promise.all(
    Array.from({ length: PARALLEL }, (_, i) => {
      const bytes = randomBytes(FILE_BYTES);
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      return api(urls[i % urls.length]!, '/api/media/init', { size: FILE_BYTES, sha256, mime: 'application/octet-stream', chunkSize: 64 * KiB }, sid);
    }),
  );
  return answers.map((a) => a.body.ret);
}

function assertWithinQuota(rets: number[]): void {
  const accepted = rets.filter((r) => r === 0).length;
  assert.ok(rets.every((r) => r === 0 || r === 5), `only ok or ret 5 TOO_LARGE: ${rets.join(',')}`);
  // Exactly what fits: never more (the race), and not fewer (a refusal must only come from a full quota).
  assert.equal(accepted * FILE_BYTES, QUOTA_BYTES);
}

describe('media daily quota', () => {
  it('never lets 30 parallel inits reserve more than the quota (SQLite)', async (t) => {
    const srv = await startServer({ mediaMaxDailyBytes: QUOTA_BYTES });
    t.after(() => srv.stop());
    const u = await userDevice(srv.url, 'racer');
    assertWithinQuota(await parallelInits([srv.url], u.sid));
  });

  describe('two nodes on one PostgreSQL database', async () => {
    const skip = await requirePostgres();
    let db: { url: string; drop(): Promise<void> };
    const nodes: TestServer[] = [];
    before(async () => {
      if (skip) return;
      db = await createTestDatabase();
      for (let i = 0; i < 2; i++) nodes.push(await startServer({ postgresUrl: db.url, mediaMaxDailyBytes: QUOTA_BYTES }));
    });
    after(async () => {
      for (const n of nodes) await n.stop();
      await db?.drop();
    });

    it('never lets 30 parallel inits over both nodes reserve more than the quota', { skip }, async () => {
      const u = await userDevice(nodes[0]!.url, 'racer');
      assertWithinQuota(await parallelInits(nodes.map((n) => n.url), u.sid));
    });
  });
});
