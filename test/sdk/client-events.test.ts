// Every typed event and API method of the SDK, over each transport: contactRequest, contact, group, read, receipt,
// recall, message; lookup, profile, sessions, groups, contacts list/decline/remove.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SynchatClient, type ClientEvents } from '../../src/sdk/index.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { TRANSPORTS, startClient, waitUntil } from './helpers.ts';

let srv: TestServer;
const clients: SynchatClient[] = [];
before(async () => {
  srv = await startServer();
});
after(async () => {
  for (const c of clients) await c.close();
  await srv.stop();
});

/** Records every event of interest, in order. */
function record(client: SynchatClient): { name: keyof ClientEvents; payload: any }[] {
  const log: { name: keyof ClientEvents; payload: any }[] = [];
  for (const name of ['message', 'read', 'receipt', 'recall', 'contact', 'contactRequest', 'group'] as const) {
    client.on(name, (payload) => log.push({ name, payload }));
  }
  return log;
}

for (const transport of TRANSPORTS) {
  describe(`events and calls over ${transport}`, () => {
    it('emits a typed event for each kind of entry, on every device', async () => {
      const t = transport;
      const a = (await startClient(t, srv.url, `ev_a_${t}`, 'phone')).client;
      const a2 = (await startClient(t, srv.url, `ev_a_${t}`, 'laptop')).client;
      const b = (await startClient(t, srv.url, `ev_b_${t}`, 'dev')).client;
      clients.push(a, a2, b);
      const la = record(a);
      const la2 = record(a2);
      const lb = record(b);

      assert.deepEqual(await a.lookupUser(`EV_B_${t}`), { username: `ev_b_${t}`, displayName: `EV_B_${t}`.toUpperCase() });
      await a.requestContact(b.username!, 'hello');
      await waitUntil(() => lb.some((e) => e.name === 'contactRequest'), 'b gets the request');
      assert.equal(lb.find((e) => e.name === 'contactRequest')!.payload.note, 'hello');
      assert.deepEqual((await b.listContacts()).incoming.map((c) => c.username), [a.username]);
      await b.acceptContact(a.username!);
      await waitUntil(() => la.some((e) => e.name === 'contact') && la2.some((e) => e.name === 'contact'), 'both alice devices get the contact');

      const sent = await a.sendText(b.username!, 'read me');
      await waitUntil(() => lb.some((e) => e.name === 'message'), 'b gets the message');
      await b.markRead(a.username!, sent.msgId!);
      await waitUntil(() => la.some((e) => e.name === 'receipt') && la2.some((e) => e.name === 'receipt'), 'alice devices get the receipt');
      assert.equal(la.find((e) => e.name === 'receipt')!.payload.by, b.username);
      await waitUntil(() => lb.some((e) => e.name === 'read'), "b's own read marker");

      await a.revoke(sent.msgId!);
      await waitUntil(() => lb.some((e) => e.name === 'recall') && la2.some((e) => e.name === 'recall'), 'everyone gets the recall');
      assert.equal(lb.find((e) => e.name === 'recall')!.payload.msgId, sent.msgId);

      const groupId = await a.createGroup('team', [b.username!]);
      await a.renameGroup(groupId, 'team 2');
      await waitUntil(() => lb.filter((e) => e.name === 'group').length >= 2, 'b sees the group twice');
      const last = lb.filter((e) => e.name === 'group').at(-1)!.payload;
      assert.equal(last.name, 'team 2');
      assert.deepEqual([...last.members].sort(), [a.username, b.username].sort());
      await a.sendText(groupId, 'to the group');
      await waitUntil(() => lb.filter((e) => e.name === 'message').length >= 2, 'b gets the group message');
      assert.equal(lb.filter((e) => e.name === 'message').at(-1)!.payload.peer, groupId);
      await a.changeGroupMembers(groupId, { remove: [b.username!] });
      await waitUntil(() => lb.some((e) => e.name === 'group' && e.payload.removed), 'b is told it left');

      await a.setProfile('Alice Renamed');
      await waitUntil(() => lb.some((e) => e.name === 'contact' && e.payload.displayName === 'Alice Renamed'), 'b sees the new name');

      const sessions = await a.listSessions();
      assert.deepEqual(sessions.map((s) => s.deviceId).sort(), ['laptop', 'phone']);
      assert.equal(sessions.filter((s) => s.isCurrent).length, 1);

      await a.blockUser(b.username!);
      await waitUntil(() => la2.some((e) => e.name === 'contact' && e.payload.blocked === true), 'alice’s other device learns the block');
      assert.deepEqual((await a2.listContacts()).blocked.map((u) => u.username), [b.username]);
      const beforeBlocked = la.filter((e) => e.name === 'message').length;
      await b.sendText(a.username!, 'you blocked me');
      await a.unblockUser(b.username!);
      await waitUntil(() => la2.some((e) => e.name === 'contact' && e.payload.blocked === false), 'and the unblock');
      await b.sendText(a.username!, 'after the unblock');
      await waitUntil(() => la.some((e) => e.name === 'message' && e.payload.content === 'after the unblock'), 'a hears b again');
      assert.deepEqual(la.filter((e) => e.name === 'message').slice(beforeBlocked).map((e) => e.payload.content), ['after the unblock'], 'nothing sent while blocked');
      assert.deepEqual((await a.listContacts()).blocked, []);

      await a.removeContact(b.username!);
      await waitUntil(() => lb.some((e) => e.name === 'contact' && e.payload.removed), 'b sees the removal');
      await assert.rejects(a.sendText(b.username!, 'no longer'), (err: any) => err.ret === 4);
    });

    it('declines a contact request and raw call() reaches any path with ret errors as SynchatError', async () => {
      const t = transport;
      const c = (await startClient(t, srv.url, `dc_c_${t}`, 'd')).client;
      const d = (await startClient(t, srv.url, `dc_d_${t}`, 'd')).client;
      clients.push(c, d);
      await c.requestContact(d.username!);
      await d.declineContact(c.username!);
      assert.deepEqual((await d.listContacts()).incoming, []);
      await assert.rejects(d.call('/api/contacts/accept', { username: c.username }), (err: any) => err.ret === 3);
      await assert.rejects(d.call('/api/no/such/path', {}), (err: any) => err.ret === 3);
      assert.ok((await d.gateways()).some((g) => g.transport === 'http'));
    });
  });
}
