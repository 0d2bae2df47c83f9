// Several gateway processes in front of one core, and senders in several client processes: every member of a
// group sees the same order, msgId increases along it, and nothing is lost or doubled.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { api, befriend, syncAll, userDevice, type Device } from '../helpers/server.ts';
import { freePort, spawnServerProcess } from '../helpers/process.ts';
import { waitUntil } from '../helpers/wait.ts';

const run = promisify(execFile);
/** How long a long-poll may take to attach before the test fails instead of hanging (not a timing assertion). */
const ATTACH_GUARD_MS = 10_000;

test('one order in a group under concurrent senders from several processes, through several gateways', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'synchat-cluster-'));
  const server = await spawnServerProcess({
    SYNCHAT_DATA_DIR: dataDir,
    SYNCHAT_WORKERS: '2',
    SYNCHAT_HTTP_PORT: String(await freePort()),
    SYNCHAT_TCP_PORT: String(await freePort()),
  });
  try {
    const names = ['co_owner', 'co_a', 'co_b', 'co_c'];
    const devs: Device[] = [];
    for (const n of names) devs.push(await userDevice(server.url, n));
    for (const d of devs.slice(1)) await befriend(server.url, devs[0]!, d);
    const g = await api(server.url, '/api/groups/create', { name: 'order', members: names.slice(1) }, devs[0]!.sid);
    const groupId = g.body.groupId;
    // A second device of one member, to check that devices agree too.
    const second = await userDevice(server.url, 'co_a', 'second');

    const perProcess = 60;
    const outputs = await Promise.all(
      devs.slice(0, 3).map((d, i) =>
        run(process.execPath, ['--import', 'tsx', 'test/helpers/burst-sender.ts'], {
          env: { ...process.env, BASE: server.url, SID: d.sid, TO: groupId, COUNT: String(perProcess), TAG: `p${i}`, CONCURRENCY: '8' },
        }),
      ),
    );
    const answers = outputs.flatMap((o) => JSON.parse(o.stdout));
    assert.equal(answers.length, 3 * perProcess);
    assert.ok(answers.every((a: any) => a.ret === 0 && a.duplicate === false));

    const orders = [];
    for (const d of [...devs, second]) {
      const msgs = (await syncAll(server.url, d.sid)).entries.filter((e) => e.kind === 'msg' && e.peer === groupId);
      orders.push(msgs.map((e) => `${e.msgId}:${e.clientMsgId}`));
    }
    for (const o of orders.slice(1)) assert.deepEqual(o, orders[0], 'every member and device sees one order');
    assert.equal(orders[0]!.length, 3 * perProcess);
    assert.equal(new Set(orders[0]).size, orders[0]!.length, 'no message twice');
    const ids = orders[0]!.map((s) => Number(s.split(':')[0]));
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!, 'msgId increases along the order');

    // Long-polls parked in one gateway wake when a send commits through another (events cross the IPC link).
    for (let i = 0; i < 10; i++) {
      const key = (await syncAll(server.url, devs[1]!.sid)).syncKey;
      // The gateways are other processes, so their parked counts are out of reach; a fresh device's acknowledged
      // key is: 0 until its poll's attach records `key`, which it does after reading the log's head. Once
      // /api/sessions shows it, a send can no longer answer the poll at once: only its event over IPC wakes it.
      const poller = await userDevice(server.url, 'co_a', `poller-${i}`);
      const poll = api(server.url, `/api/synccheck?syncKey=${key}&timeout=60000`, undefined, poller.sid);
      await waitUntil(
        async () => (await api(server.url, '/api/sessions', {}, devs[1]!.sid)).body.sessions.find((s: any) => s.deviceId === `poller-${i}`).ackedKey === key,
        `poll ${i} is attached at key ${key}`,
        ATTACH_GUARD_MS,
      );
      const sent = await api(server.url, '/api/sendmsg', { clientMsgId: `wake-${i}`, to: groupId, type: 1, content: 'wake' }, devs[2]!.sid);
      const r = await poll;
      assert.equal(r.body.ret, 0);
      assert.ok(r.body.selector & 1, 'selector says messages');
      assert.ok(r.body.syncKey >= key + 1);
      assert.equal(sent.body.ret, 0);
    }
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
