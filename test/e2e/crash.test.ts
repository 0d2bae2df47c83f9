// kill -9 in the middle of a burst of sends: every answered send survives exactly once, nothing else changes,
// and retrying the unanswered ones with their clientMsgIds never doubles a message.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { api, befriend, startBurst, syncAll, userDevice } from '../helpers/server.ts';
import { freePort, spawnServerProcess } from '../helpers/process.ts';
import { waitUntil } from '../helpers/wait.ts';

/** How long 150 sends may take before the test fails instead of hanging (a dead server answers none). */
const BURST_GUARD_MS = 30_000;

for (const workers of ['0', '2']) {
  test(`every answered send survives kill -9 exactly once (SYNCHAT_WORKERS=${workers})`, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'synchat-crash-'));
    const env = { SYNCHAT_DATA_DIR: dataDir, SYNCHAT_WORKERS: workers, SYNCHAT_HTTP_PORT: String(await freePort()), SYNCHAT_TCP_PORT: String(await freePort()) };
    let server = await spawnServerProcess(env);
    try {
      const alice = await userDevice(server.url, 'crash_alice');
      const bob = await userDevice(server.url, 'crash_bob');
      await befriend(server.url, alice, bob);
      const before = { alice: await syncAll(server.url, alice.sid), bob: await syncAll(server.url, bob.sid) };

      const burst = startBurst(server.url, alice, 'crash_bob', 24, 'burst ');
      const { answered, attempted } = burst;
      await waitUntil(() => answered.size >= 150, '150 sends are answered', BURST_GUARD_MS, 2);
      const stopped = burst.stop();
      await server.kill9();
      await stopped;

      server = await spawnServerProcess(env);
      const afterAlice = await syncAll(server.url, alice.sid);
      const afterBob = await syncAll(server.url, bob.sid);
      // Nothing else changed: what was there before the burst is there, unchanged, first.
      assert.deepEqual(afterAlice.entries.slice(0, before.alice.entries.length), before.alice.entries);
      assert.deepEqual(afterBob.entries.slice(0, before.bob.entries.length), before.bob.entries);
      for (const [who, log] of [['alice', afterAlice], ['bob', afterBob]] as const) {
        const msgs = log.entries.filter((e) => e.kind === 'msg');
        const ids = msgs.map((e) => e.clientMsgId);
        assert.equal(new Set(ids).size, ids.length, `${who}: no clientMsgId twice`);
        const byId = new Map(msgs.map((e) => [e.clientMsgId, e]));
        for (const [clientMsgId, ans] of answered) {
          const e = byId.get(clientMsgId);
          assert.ok(e, `${who}: answered send ${clientMsgId} is present`);
          assert.equal(e.msgId, ans.msgId);
          assert.equal(e.content, `burst ${clientMsgId}`);
        }
        for (const id of ids) assert.ok(attempted.includes(id), `${who}: ${id} was really sent`);
        assert.equal(log.entries.length, log.entries.at(-1).seq, `${who}: keys are contiguous, no holes`);
      }
      assert.equal(answered.get([...answered.keys()][0]!).seq <= afterAlice.syncKey, true);
      // Retrying every attempted send: the committed ones answer duplicate with the same msgId; nothing doubles.
      const committed = new Set(afterAlice.entries.filter((e) => e.kind === 'msg').map((e) => e.clientMsgId));
      for (const clientMsgId of attempted) {
        const r = await api(server.url, '/api/sendmsg', { clientMsgId, to: 'crash_bob', type: 1, content: `burst ${clientMsgId}` }, alice.sid);
        assert.equal(r.body.ret, 0);
        assert.equal(r.body.duplicate, committed.has(clientMsgId), clientMsgId);
        if (answered.has(clientMsgId)) assert.equal(r.body.msgId, answered.get(clientMsgId).msgId);
      }
      const final = (await syncAll(server.url, bob.sid)).entries.filter((e) => e.kind === 'msg');
      assert.equal(final.length, attempted.length);
      assert.equal(new Set(final.map((e) => e.clientMsgId)).size, attempted.length);
    } finally {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
}
