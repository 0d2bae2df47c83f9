// The gateway ↔ core link over a pair of in-memory channels (the real IpcCoreHost and IpcChatClient around a real
// ChatService): a gateway gets a user's events only while it holds an attach's subscription, and only its members
// of a group fan-out.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { IpcChatClient, IpcCoreHost } from '../../src/server/ipc.ts';
import type { BusEvent } from '../../src/service/index.ts';
import { api, befriend, startServer, userDevice } from '../helpers/server.ts';

/** Two ends of a channel: what one sends, the other receives on a later turn (as over a pipe). */
function channelPair(): [EventEmitter & { send(m: unknown): boolean }, EventEmitter & { send(m: unknown): boolean }] {
  const a = new EventEmitter() as EventEmitter & { send(m: unknown): boolean };
  const b = new EventEmitter() as EventEmitter & { send(m: unknown): boolean };
  a.send = (m) => (setImmediate(() => b.emit('message', structuredClone(m))), true);
  b.send = (m) => (setImmediate(() => a.emit('message', structuredClone(m))), true);
  return [a, b];
}

const settle = () => new Promise((r) => setTimeout(r, 50));

test('forwards a user’s news to a gateway only while an attach holds it, and only that gateway’s members of a fan-out', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  const [alice, bob, carol] = [await userDevice(srv.url, 'ipc_alice'), await userDevice(srv.url, 'ipc_bob'), await userDevice(srv.url, 'ipc_carol')];
  await befriend(srv.url, alice, bob);
  await befriend(srv.url, alice, carol);
  const group = (await api(srv.url, '/api/groups/create', { name: 'g', members: ['ipc_bob', 'ipc_carol'] }, alice.sid)).body.groupId;

  const [coreEnd, gatewayEnd] = channelPair();
  const host = new IpcCoreHost(srv.core.service, coreEnd as never, () => srv.core.readiness(), () => srv.core.reports.stats());
  t.after(() => host.close());
  const gateway = new IpcChatClient(gatewayEnd);
  const seen: BusEvent[] = [];
  gateway.onEvents((events) => seen.push(...events));

  const attached = await gateway.attach(bob.sid, undefined, '127.0.0.1');
  assert.equal(attached.ret, 0);
  assert.ok(attached.subscription, 'a successful attach holds a subscription');

  await api(srv.url, '/api/sendmsg', { clientMsgId: 'g1', to: group, type: 1, content: 'to the group' }, alice.sid);
  await api(srv.url, '/api/sendmsg', { clientMsgId: 'd1', to: 'ipc_carol', type: 1, content: 'not for bob' }, alice.sid);
  await settle();
  const fanouts = seen.filter((e) => e.type === 'fanout');
  assert.equal(fanouts.length, 1);
  assert.deepEqual(fanouts[0]!.type === 'fanout' && fanouts[0]!.fanout.uins, [bob.uin], 'only the member this gateway holds');
  assert.equal(seen.filter((e) => e.type === 'news').length, 0, 'nothing of carol’s or alice’s logs');

  attached.subscription!.release();
  attached.subscription!.release();
  await settle();
  seen.length = 0;
  await api(srv.url, '/api/sendmsg', { clientMsgId: 'g2', to: group, type: 1, content: 'after release' }, alice.sid);
  await settle();
  assert.deepEqual(seen, [], 'released: nothing more reaches this gateway');

  const refused = await gateway.attach('not-a-session', undefined, '127.0.0.1');
  assert.equal(refused.ret, 1100);
  assert.equal(refused.subscription, undefined);
});
