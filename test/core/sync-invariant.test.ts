// The sync invariant (zulip's verify_action, as a property): for random sequences of actions by several users
// on several devices, a device that syncs incrementally at random moments ends with exactly the log a fresh
// full sync returns, and the state it derives from entries (contacts, blocks, groups) equals the server's snapshot.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { api, startServer, syncAll, userDevice, type Device, type TestServer } from '../helpers/server.ts';

let srv: TestServer;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});

type Action =
  | { t: 'request'; from: number; to: number }
  | { t: 'accept'; by: number; of: number }
  | { t: 'remove'; by: number; of: number }
  | { t: 'block'; by: number; of: number; isBlocking: boolean }
  | { t: 'send'; from: number; to: number; retry: boolean }
  | { t: 'groupSend'; from: number }
  | { t: 'groupCreate'; by: number; members: number[] }
  | { t: 'groupLeave'; by: number }
  | { t: 'read'; by: number }
  | { t: 'revoke'; by: number }
  | { t: 'sync'; device: number };

const USERS = 3;
const u = fc.integer({ min: 0, max: USERS - 1 });
const action: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ t: fc.constant('request' as const), from: u, to: u }),
  fc.record({ t: fc.constant('accept' as const), by: u, of: u }),
  fc.record({ t: fc.constant('remove' as const), by: u, of: u }),
  fc.record({ t: fc.constant('block' as const), by: u, of: u, isBlocking: fc.boolean() }),
  fc.record({ t: fc.constant('send' as const), from: u, to: u, retry: fc.boolean() }),
  fc.record({ t: fc.constant('send' as const), from: u, to: u, retry: fc.boolean() }),
  fc.record({ t: fc.constant('groupSend' as const), from: u }),
  fc.record({ t: fc.constant('groupCreate' as const), by: u, members: fc.uniqueArray(u, { maxLength: 2 }) }),
  fc.record({ t: fc.constant('groupLeave' as const), by: u }),
  fc.record({ t: fc.constant('read' as const), by: u }),
  fc.record({ t: fc.constant('revoke' as const), by: u }),
  fc.record({ t: fc.constant('sync' as const), device: fc.integer({ min: 0, max: USERS * 2 - 1 }) }),
);

/** A device's local copy: entries applied in order from incremental syncs. */
interface Mirror {
  dev: Device;
  key: number;
  entries: any[];
}

async function pull(m: Mirror): Promise<void> {
  const r = await syncAll(srv.url, m.dev.sid, m.key, 3);
  m.entries.push(...r.entries);
  m.key = r.syncKey;
}

/** Derives contacts, blocks and groups from entries, as a client would. */
function derive(entries: any[], me: string): { contacts: string[]; blocked: string[]; groups: string[] } {
  const contacts = new Map<string, boolean>();
  const blocked = new Set<string>();
  const groups = new Map<string, string>();
  for (const e of entries) {
    if (e.kind === 'contact' && e.blocked !== undefined) {
      if (e.blocked) blocked.add(e.username);
      else blocked.delete(e.username);
    }
    if (e.kind === 'contact' && e.username !== me) {
      if (e.removed) contacts.delete(e.username);
      else contacts.set(e.username, true);
    }
    if (e.kind === 'group') {
      if (e.removed) groups.delete(e.groupId);
      else groups.set(e.groupId, e.name);
    }
  }
  return { contacts: [...contacts.keys()].sort(), blocked: [...blocked].sort(), groups: [...groups.keys()].sort() };
}

let run = 0;
test('incremental sync on every device equals a fresh full sync, and derived state equals the snapshot', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(action, { minLength: 5, maxLength: 40 }), async (actions) => {
      run++;
      const names = Array.from({ length: USERS }, (_, i) => `inv${run}_${i}`);
      const devs: Device[] = [];
      for (const n of names) devs.push(await userDevice(srv.url, n, 'a'));
      for (const n of names) devs.push(await userDevice(srv.url, n, 'b'));
      const mirrors: Mirror[] = devs.map((dev) => ({ dev, key: 0, entries: [] }));
      const groups: string[] = [];
      const sent: { from: number; msgId: string; peer: string }[] = [];
      let n = 0;
      for (const a of actions) {
        const sid = (i: number) => devs[i + USERS * (n++ % 2)]!.sid;
        switch (a.t) {
          case 'request':
            await api(srv.url, '/api/contacts/request', { username: names[a.to] }, sid(a.from));
            break;
          case 'accept':
            await api(srv.url, '/api/contacts/accept', { username: names[a.of] }, sid(a.by));
            break;
          case 'remove':
            await api(srv.url, '/api/contacts/remove', { username: names[a.of] }, sid(a.by));
            break;
          case 'block':
            await api(srv.url, a.isBlocking ? '/api/contacts/block' : '/api/contacts/unblock', { username: names[a.of] }, sid(a.by));
            break;
          case 'send': {
            const body = { clientMsgId: `c${n}`, to: names[a.to], type: 1, content: `m${n}` };
            const s = sid(a.from);
            const r = await api(srv.url, '/api/sendmsg', body, s);
            if (a.retry) {
              const again = await api(srv.url, '/api/sendmsg', body, s);
              if (r.body.ret === 0) assert.deepEqual(again.body, { ...r.body, duplicate: true });
            }
            if (r.body.ret === 0) sent.push({ from: a.from, msgId: r.body.msgId, peer: names[a.to]! });
            break;
          }
          case 'groupSend':
            for (const g of groups) {
              const r = await api(srv.url, '/api/sendmsg', { clientMsgId: `g${n}`, to: g, type: 1, content: 'g' }, sid(a.from));
              if (r.body.ret === 0) sent.push({ from: a.from, msgId: r.body.msgId, peer: g });
            }
            break;
          case 'groupCreate': {
            const r = await api(srv.url, '/api/groups/create', { name: `g${n}`, members: a.members.map((i) => names[i]) }, sid(a.by));
            if (r.body.ret === 0) groups.push(r.body.groupId);
            break;
          }
          case 'groupLeave':
            if (groups.length) await api(srv.url, '/api/groups/members', { groupId: groups[0], remove: [names[a.by]] }, sid(a.by));
            break;
          case 'read': {
            const m = sent.find((s) => s.peer === names[a.by]);
            if (m) await api(srv.url, '/api/read', { peer: names[m.from], msgId: m.msgId }, sid(a.by));
            break;
          }
          case 'revoke': {
            const m = sent.filter((s) => s.from === a.by).at(-1);
            if (m) await api(srv.url, '/api/revoke', { msgId: m.msgId }, sid(a.by));
            break;
          }
          case 'sync':
            await pull(mirrors[a.device]!);
            break;
        }
      }
      for (const m of mirrors) {
        await pull(m);
        const fresh = await syncAll(srv.url, m.dev.sid, 0, 1000);
        assert.deepEqual(m.entries, fresh.entries, 'incremental == full');
        const seqs = m.entries.map((e) => e.seq);
        for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], 'strictly increasing seq');
        const snap = (await api(srv.url, '/api/contacts/list', {}, m.dev.sid)).body;
        const derived = derive(m.entries, m.dev.username);
        assert.deepEqual(derived.contacts, snap.contacts.map((c: any) => c.username).sort(), 'contacts');
        assert.deepEqual(derived.blocked, snap.blocked.map((c: any) => c.username).sort(), 'blocked');
        assert.deepEqual(derived.groups, snap.groups.map((g: any) => g.groupId).sort(), 'groups');
      }
      // Both devices of a user hold the same log.
      for (let i = 0; i < USERS; i++) assert.deepEqual(mirrors[i]!.entries, mirrors[i + USERS]!.entries);
    }),
    { numRuns: Number(process.env.FUZZ_RUNS ?? 12) },
  );
});
