// The pure decisions of src/core/decisions.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  blockChange,
  contactAcceptRefusal,
  contactRequestAction,
  directReadReceipt,
  directRecipients,
  groupAddRefusal,
  unblockedRecipients,
  sendAnswer,
} from '../../src/core/decisions.ts';
import type { ContactRow, MessageRow } from '../../src/core/ports.ts';

const alice = { uin: 1, username: 'alice' };
const bob = { uin: 2, username: 'bob' };
const msg = (fromUin: number, toUin: number, groupId = 0): MessageRow => ({
  msgId: 9, fromUin, clientMsgId: 'c', to: 'x', toUin, groupId, type: 1, content: 'hi', mediaId: null, createTime: 5, senderSeq: 3, revoked: false,
});
const contact = (state: ContactRow['state']): ContactRow => ({ uin: 1, peerUin: 2, state, note: '', updateTime: 0 });
const theirs = (state: ContactRow['state']): ContactRow => ({ uin: 2, peerUin: 1, state, note: '', updateTime: 0 });

test('a direct message goes to both logs, each filed under the other side; a note to oneself to one log', () => {
  assert.deepEqual(directRecipients(alice, bob), [
    { uin: 1, peer: 'bob' },
    { uin: 2, peer: 'alice' },
  ]);
  assert.deepEqual(directRecipients(alice, alice), [{ uin: 1, peer: 'alice' }]);
  assert.deepEqual(directRecipients(alice, bob, true), [{ uin: 1, peer: 'bob' }], 'a recipient who blocked the sender gets nothing');
});

test('a group message goes to every member but those who blocked the sender; the sender always keeps it', () => {
  assert.deepEqual(unblockedRecipients([1, 2, 3, 4], 1, []), [1, 2, 3, 4]);
  assert.deepEqual(unblockedRecipients([1, 2, 3, 4], 1, [9, 3, 2]), [1, 4]);
  assert.deepEqual(unblockedRecipients([1, 2], 1, [1]), [1, 2], 'a self-block does not hide one’s own message');
});

test('a blocked user cannot add the blocker to a group', () => {
  assert.equal(groupAddRefusal([bob], []), undefined);
  assert.equal(groupAddRefusal([alice, bob], [3]), undefined);
  const r = groupAddRefusal([alice, bob], [2]);
  assert.deepEqual([r?.ret, r?.errMsg], [4, 'bob cannot be added to a group by you']);
});

test('a block is recorded once, drops a pending request, and flags the entry removed unless the two are contacts', () => {
  assert.equal(blockChange(undefined, true, true), undefined, 'a repeated block changes nothing');
  assert.equal(blockChange(contact('accepted'), false, false), undefined, 'unblocking someone not blocked changes nothing');
  assert.deepEqual(blockChange(contact('accepted'), false, true), { dropsRequest: false, entry: { blocked: true } });
  assert.deepEqual(blockChange(contact('incoming'), false, true), { dropsRequest: true, entry: { blocked: true, removed: true } });
  assert.deepEqual(blockChange(contact('outgoing'), false, true), { dropsRequest: true, entry: { blocked: true, removed: true } });
  assert.deepEqual(blockChange(undefined, false, true), { dropsRequest: false, entry: { blocked: true, removed: true } });
  assert.deepEqual(blockChange(contact('accepted'), true, false), { dropsRequest: false, entry: { blocked: false } });
  assert.deepEqual(blockChange(undefined, true, false), { dropsRequest: false, entry: { blocked: false, removed: true } });
});

test('a repeated send answers the first send’s msgId, seq and time, marked duplicate', () => {
  assert.deepEqual(sendAnswer(msg(1, 2), true), { msgId: '9', seq: 3, createTime: 5, duplicate: true });
});

test('a read receipt goes to the other side of the chat, to nobody in a note to oneself, and a message from elsewhere is refused', () => {
  assert.deepEqual(directReadReceipt(msg(2, 1), 1, 2), { receiptUin: 2 });
  assert.deepEqual(directReadReceipt(msg(1, 2), 1, 2), { receiptUin: 2 }, 'reading one’s own sent message still tells the peer');
  assert.deepEqual(directReadReceipt(msg(1, 1), 1, 1), { receiptUin: 0 });
  assert.deepEqual(directReadReceipt(msg(2, 1), 1, 2, true), { receiptUin: 0 }, 'no receipt to someone who blocked the reader');
  for (const [m, other] of [[msg(2, 3), 2], [msg(1, 2, 7), 2], [undefined, 2], [msg(2, 1), undefined]] as const) {
    assert.equal((directReadReceipt(m, 1, other) as { ret?: number }).ret, 3);
  }
});

test('a contact request asks once, accepts a pending request from the other side, is swallowed by a block, and is refused between contacts', () => {
  assert.equal(contactRequestAction(undefined, undefined, false), 'request');
  assert.equal(contactRequestAction(contact('outgoing'), theirs('incoming'), false), 'pending', 'one pending request per pair');
  assert.equal(contactRequestAction(contact('outgoing'), undefined, false), 'request', 'a swallowed request is delivered once unblocked');
  assert.equal(contactRequestAction(undefined, undefined, true), 'swallow');
  assert.equal(contactRequestAction(contact('outgoing'), theirs('incoming'), true), 'swallow');
  assert.equal(contactRequestAction(contact('incoming'), theirs('outgoing'), false), 'accept');
  assert.equal((contactRequestAction(contact('accepted'), theirs('accepted'), false) as { ret: number }).ret, 6);
  assert.equal(contactAcceptRefusal(contact('incoming')), undefined);
  assert.equal(contactAcceptRefusal(contact('accepted'))?.ret, 6);
  assert.equal(contactAcceptRefusal(contact('outgoing'))?.ret, 3);
  assert.equal(contactAcceptRefusal(undefined)?.ret, 3);
});
