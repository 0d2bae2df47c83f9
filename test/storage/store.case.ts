/**
 * The Store contract (src/core/ports.ts), run against every adapter: each adapter's test file calls
 * runStoreContract with a factory (hono's common.case.test.ts, centrifuge's map_broker_shared_test.go).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Store } from '../../src/core/ports.ts';

/** How to open a fresh store; `reopen` opens the same data again (durability checks). */
export interface StoreFactory {
  name: string;
  open(): Promise<{ store: Store; reopen(): Promise<Store>; cleanup(): Promise<void> }>;
  /** Why the suite is skipped here, if it is. */
  skip?: string;
}

const user = (username: string) => ({ username, displayName: username, pwHash: 'x', epoch: 'e-' + username, createTime: 1 });

/** Registers the contract tests for one adapter. */
export function runStoreContract(f: StoreFactory): void {
  describe(`Store contract: ${f.name}`, { skip: f.skip }, () => {
    it('commits a transaction durably and makes it visible to reads only after commit', async () => {
      const h = await f.open();
      try {
        let seenInside: unknown = 'unset';
        const uin = await h.store.transaction(async (tx) => {
          const id = await tx.insertUser(user('alice'));
          seenInside = await h.store.read.getUser(id);
          return id;
        });
        assert.equal(seenInside, undefined, 'a read outside the transaction must not see uncommitted rows');
        assert.equal((await h.store.read.getUser(uin))?.username, 'alice');
        await h.store.close();
        const again = await h.reopen();
        assert.equal((await again.read.getUserByName('alice'))?.uin, uin);
        await again.close();
      } finally {
        await h.cleanup();
      }
    });

    it('keeps nothing of a transaction whose function rejects', async () => {
      const h = await f.open();
      try {
        await assert.rejects(
          h.store.transaction(async (tx) => {
            const uin = await tx.insertUser(user('bob'));
            await tx.lockLogs([uin]);
            await tx.append([{ uin, kind: 'msg', fields: '{}' }]);
            throw new Error('boom');
          }),
          /boom/,
        );
        assert.equal(await h.store.read.getUserByName('bob'), undefined);
        // The adapter's caches forgot the rolled-back head: the next append starts at 1 again.
        const uin = await h.store.transaction((tx) => tx.insertUser(user('bob')));
        await h.store.transaction(async (tx) => {
          assert.equal((await tx.heads([uin]))[0]!.head, 0);
          await tx.lockLogs([uin]);
          const rows = await tx.append([{ uin, kind: 'msg', fields: '{}' }]);
          assert.deepEqual(rows, [{ uin, seq: 1, kind: 'msg', json: '{"seq":1,"kind":"msg"}' }]);
        });
        assert.equal((await h.store.read.heads([uin]))[0]!.head, 1);
        await h.store.close();
      } finally {
        await h.cleanup();
      }
    });

    it('allocates dense seqs per user, encodes each entry with its seq, tracks heads per selector, and reads pages after a key', async () => {
      const h = await f.open();
      try {
        const carol = await h.store.transaction((tx) => tx.insertUser(user('carol')));
        const dave = await h.store.transaction((tx) => tx.insertUser(user('dave')));
        await assert.rejects(
          h.store.transaction(async (tx) => {
            await tx.lockLogs([carol]);
            await tx.append([{ uin: carol, kind: 'msg', fields: '{"n":1}' }]);
            throw new Error('rolled back');
          }),
          /rolled back/,
        );
        // The rolled-back append left the head where it was.
        assert.equal((await h.store.read.heads([carol]))[0]!.head, 0);
        const kinds = ['msg', 'contact', 'msg', 'read', 'group', 'revoke', 'msg'] as const;
        const rows = await h.store.transaction(async (tx) => {
          // Interleaved users in one call, then a second call in the same transaction: seqs follow per user.
          await tx.lockLogs([dave, carol]);
          const first = await tx.append(kinds.slice(0, 4).flatMap((kind, i) => [{ uin: carol, kind, fields: `{"n":${i + 1}}` }, { uin: dave, kind: 'msg' as const, fields: '{}' }]));
          assert.equal((await tx.heads([carol]))[0]!.head, 4, 'a transaction reads its own appends');
          return [...first, ...(await tx.append(kinds.slice(4).map((kind, i) => ({ uin: carol, kind, fields: `{"n":${i + 5}}` }))))];
        });
        assert.deepEqual(rows.filter((r) => r.uin === carol).map((r) => r.seq), [1, 2, 3, 4, 5, 6, 7]);
        assert.deepEqual(rows.filter((r) => r.uin === dave).map((r) => r.seq), [1, 2, 3, 4]);
        assert.equal(rows[0]!.json, '{"seq":1,"kind":"msg","n":1}');
        const [heads, daveHeads, nobody] = await h.store.read.heads([carol, dave, 999_999]);
        assert.equal(heads!.head, 7);
        assert.deepEqual(heads!.bySelector, { 1: 7, 2: 2, 4: 4, 8: 5, 16: 6 });
        assert.equal(daveHeads!.head, 4);
        assert.deepEqual(nobody, { head: 0, bySelector: {} });
        assert.deepEqual((await h.store.readLog(carol, 2, 3)).map((r) => [r.seq, r.kind, r.json]), [
          [3, 'msg', '{"seq":3,"kind":"msg","n":3}'],
          [4, 'read', '{"seq":4,"kind":"read","n":4}'],
          [5, 'group', '{"seq":5,"kind":"group","n":5}'],
        ]);
        assert.deepEqual((await h.store.readLog(carol, 7, 10)).map((r) => r.seq), []);
        await h.store.close();
      } finally {
        await h.cleanup();
      }
    });

    it('runs transactions one at a time in call order (or, with concurrency > 1, isolated by the log locks), each durable', async () => {
      const h = await f.open();
      try {
        const uin = await h.store.transaction((tx) => tx.insertUser(user('erin')));
        const order: string[] = [];
        // Ten transactions issued at once, as a pipelined group commit does: each sees the one before it.
        const all = Array.from({ length: 10 }, (_, i) =>
          h.store.transaction(async (tx) => {
            order.push(`run ${i}`);
            await tx.lockLogs([uin]);
            const [row] = await tx.append([{ uin, kind: 'msg', fields: `{"i":${i}}` }]);
            return row!.seq;
          }).then((seq) => {
            order.push(`done ${i}`);
            return seq;
          }),
        );
        const seqs = await Promise.all(all);
        if (h.store.concurrency === 1) {
          assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
          assert.deepEqual(order.filter((o) => o.startsWith('run')), Array.from({ length: 10 }, (_, i) => `run ${i}`));
          assert.deepEqual(order.filter((o) => o.startsWith('done')), Array.from({ length: 10 }, (_, i) => `done ${i}`));
        } else {
          // Several at once: the log lock still gives each its own seq, densely.
          assert.deepEqual([...seqs].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        }
        assert.equal((await h.store.read.heads([uin]))[0]!.head, 10);
        await h.store.close();
        const again = await h.reopen();
        assert.deepEqual((await again.readLog(uin, 0, 100)).map((r) => r.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        await again.close();
      } finally {
        await h.cleanup();
      }
    });

    it('finds a send by (sender, clientMsgId) and allocates increasing msgIds and group ids', async () => {
      const h = await f.open();
      try {
        const ids = await h.store.transaction(async (tx) => {
          const a = await tx.nextMsgId();
          const b = await tx.nextMsgId();
          await tx.insertMessage({ msgId: b, fromUin: 1, clientMsgId: 'c1', to: 'x', toUin: 2, groupId: 0, type: 1, content: 'hi', mediaId: null, createTime: 5, senderSeq: 3, revoked: false });
          return [a, b, await tx.nextGroupId(), await tx.nextGroupId()];
        });
        assert.ok(ids[1]! > ids[0]! && ids[3]! > ids[2]!);
        assert.equal((await h.store.read.findSend(1, 'c1'))?.senderSeq, 3);
        assert.equal(await h.store.read.findSend(1, 'c2'), undefined);
        await h.store.close();
        const again = await h.reopen();
        const next = await again.transaction((tx) => tx.nextMsgId());
        assert.ok(next > ids[1]!, 'msgIds keep increasing across restarts');
        await again.close();
      } finally {
        await h.cleanup();
      }
    });

    it('replaces a password hash and a display name of one user only', async () => {
      const h = await f.open();
      try {
        const [a, b] = await h.store.transaction(async (tx) => [await tx.insertUser(user('pat')), await tx.insertUser(user('quin'))]);
        await h.store.transaction(async (tx) => {
          await tx.setPasswordHash(a!, 'scrypt$15$8$1$salt$hash');
          await tx.setDisplayName(a!, 'Pat');
        });
        assert.deepEqual([(await h.store.read.getUser(a!))?.pwHash, (await h.store.read.getUser(a!))?.displayName], ['scrypt$15$8$1$salt$hash', 'Pat']);
        assert.equal((await h.store.read.getUser(b!))?.pwHash, 'x');
        await h.store.close();
      } finally {
        await h.cleanup();
      }
    });

    it("renews one user's epoch only while it is still the one seen, and every user's, durably", async () => {
      const h = await f.open();
      try {
        const [a, b] = await h.store.transaction(async (tx) => [await tx.insertUser(user('rosa')), await tx.insertUser(user('sam'))]);
        const epochs = async (s: Store) => (await s.read.getUsers([a!, b!])).map((u) => u.epoch);
        // One user's: the other keeps its epoch; a second renewal from the same old epoch changes nothing.
        assert.equal(await h.store.transaction((tx) => tx.renewEpochs('one-1', { uin: a!, was: 'e-rosa' })), 1);
        assert.equal(await h.store.transaction((tx) => tx.renewEpochs('one-2', { uin: a!, was: 'e-rosa' })), 0);
        assert.deepEqual(await epochs(h.store), ['one-1', 'e-sam']);
        // Rolled back: kept nowhere.
        await assert.rejects(
          h.store.transaction(async (tx) => {
            await tx.renewEpochs('lost');
            throw new Error('boom');
          }),
          /boom/,
        );
        assert.deepEqual(await epochs(h.store), ['one-1', 'e-sam']);
        // Every user's (after a restore): counted, and kept across a reopen.
        assert.equal(await h.store.transaction((tx) => tx.renewEpochs('all-1')), 2);
        await h.store.close();
        const again = await h.reopen();
        assert.deepEqual(await epochs(again), ['all-1', 'all-1']);
        await again.close();
      } finally {
        await h.cleanup();
      }
    });

    it('keeps contacts, group members in join order, sessions and read markers', async () => {
      const h = await f.open();
      try {
        await h.store.transaction(async (tx) => {
          await tx.putContact({ uin: 1, peerUin: 2, state: 'outgoing', note: 'n', updateTime: 1 });
          await tx.putContact({ uin: 1, peerUin: 2, state: 'accepted', note: '', updateTime: 2 });
          await tx.putGroup({ groupId: 1, name: 'g', ownerUin: 3, createTime: 1 });
          await tx.addMembers(1, [3], 1);
          await tx.addMembers(1, [1, 2], 1);
          await tx.removeMembers(1, [1]);
          await tx.insertSession({ sessionId: 's1', tokenHash: 'h1', uin: 1, deviceId: 'd', deviceName: 'd', createTime: 1, lastSeenTime: 1, ackedKey: 0, endedRet: 0 });
          await tx.setReadMarker({ uin: 1, peer: 'bob', msgId: 10 });
          await tx.setReadMarker({ uin: 1, peer: 'bob', msgId: 5 });
        });
        await h.store.transaction(async (tx) => {
          await tx.touchSessions([{ sessionId: 's1', ackedKey: 7, lastSeenTime: 9 }]);
          await tx.touchSessions([{ sessionId: 's1', ackedKey: 3, lastSeenTime: 4 }]);
          await tx.endSession('s1', 1101);
        });
        const r = h.store.read;
        assert.equal((await r.getContact(1, 2))?.state, 'accepted');
        assert.deepEqual(await r.getMembers(1), [3, 2]);
        assert.deepEqual(await r.listGroups(2), [1]);
        const s = await r.getSessionByToken('h1');
        assert.deepEqual([s?.ackedKey, s?.lastSeenTime, s?.endedRet], [7, 9, 1101]);
        assert.equal(await r.getReadMarker(1, 'bob'), 10, 'read markers only move forward');
        await h.store.close();
      } finally {
        await h.cleanup();
      }
    });

    it('keeps blocks both ways round, ignores a repeated block or a missing unblock, and keeps them across a restart', async () => {
      const h = await f.open();
      try {
        await h.store.transaction(async (tx) => {
          await tx.putBlock(1, 3, 10);
          await tx.putBlock(1, 2, 20);
          await tx.putBlock(1, 3, 30); // a repeat keeps the first time (and order)
          await tx.putBlock(4, 3, 5);
          await tx.deleteBlock(2, 1); // none
          assert.equal(await tx.isBlocked(1, 2), true, 'a transaction sees its own block');
        });
        let r = h.store.read;
        assert.deepEqual(await r.listBlocked(1), [3, 2]);
        assert.deepEqual(await r.blockersAmong(3, [4, 2, 1]), [1, 4]);
        assert.deepEqual(await r.blockersAmong(3, []), []);
        // A user blocked by many (past what an adapter may read in full): only the asked ones come back.
        await h.store.transaction(async (tx) => {
          for (let u = 100; u < 300; u++) await tx.putBlock(u, 50, u);
        });
        assert.deepEqual(await r.blockersAmong(50, [299, 7, 150, 300, 100]), [100, 150, 299]);
        assert.deepEqual(await r.blockersAmong(50, [7]), []);
        assert.equal(await r.isBlocked(1, 3), true);
        assert.equal(await r.isBlocked(3, 1), false, 'a block is one way');
        await h.store.transaction((tx) => tx.deleteBlock(1, 3));
        await h.store.close();
        const again = await h.reopen();
        r = again.read;
        assert.deepEqual(await r.listBlocked(1), [2]);
        assert.deepEqual(await r.blockersAmong(3, [1, 4]), [4]);
        assert.equal(await r.isBlocked(1, 3), false);
        await again.close();
      } finally {
        await h.cleanup();
      }
    });

    it('moves a QR login out of one state once (two racing moves: one wins), removes expired ones, and keeps them across a restart', async () => {
      const h = await f.open();
      try {
        const qr = (uuid: string, expireTime: number) =>
          ({ uuid, deviceId: 'desk', deviceName: 'Desk', createTime: 1, expireTime, state: 'waiting', scannerUin: 0, scanTime: 0 }) as const;
        await h.store.transaction(async (tx) => {
          await tx.insertQrLogin(qr('a'.repeat(32), 100));
          await tx.insertQrLogin(qr('b'.repeat(32), 200));
          await tx.insertQrLogin(qr('c'.repeat(32), 300));
          assert.equal((await tx.getQrLogin('a'.repeat(32)))?.deviceName, 'Desk', 'a transaction sees its own insert');
        });
        const r = h.store.read;
        assert.deepEqual(await r.getQrLogin('c'.repeat(32)), qr('c'.repeat(32), 300));
        assert.equal(await r.getQrLogin('d'.repeat(32)), undefined);
        const scanned = { state: 'scanned', scannerUin: 7, scanTime: 50 } as const;
        assert.equal(await h.store.transaction((tx) => tx.updateQrLogin('c'.repeat(32), 'scanned', scanned)), false, 'not in the state named');
        assert.equal(await h.store.transaction((tx) => tx.updateQrLogin('c'.repeat(32), 'waiting', scanned)), true);
        // Two transactions move the same login out of `scanned` at once (concurrently where the store allows it).
        const confirmed = { state: 'confirmed', scannerUin: 7, scanTime: 50 } as const;
        const wins = await Promise.all([1, 2].map(() => h.store.transaction((tx) => tx.updateQrLogin('c'.repeat(32), 'scanned', confirmed))));
        assert.deepEqual(wins.sort(), [false, true]);
        assert.deepEqual(await r.getQrLogin('c'.repeat(32)), { ...qr('c'.repeat(32), 300), ...confirmed });
        // Expired before 250: a and b; at most one per call here.
        assert.equal(await h.store.transaction((tx) => tx.deleteExpiredQrLogins(250, 1)), 1);
        assert.equal(await r.getQrLogin('a'.repeat(32)), undefined, 'the oldest goes first');
        assert.equal(await h.store.transaction((tx) => tx.deleteExpiredQrLogins(250, 10)), 1);
        assert.equal(await h.store.transaction((tx) => tx.deleteExpiredQrLogins(250, 10)), 0);
        await h.store.close();
        const again = await h.reopen();
        assert.equal((await again.read.getQrLogin('c'.repeat(32)))?.state, 'confirmed');
        assert.equal(await again.read.getQrLogin('b'.repeat(32)), undefined);
        await again.close();
      } finally {
        await h.cleanup();
      }
    });
  });
}
