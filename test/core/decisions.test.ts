// The pure decisions of src/core/decisions.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { contactAcceptRefusal, contactRequestAction, directReadReceipt, directRecipients, sendAnswer } from '../../src/core/decisions.ts';
import type { ContactRow, MessageRow } from '../../src/core/ports.ts';

const alice = { uin: 1, username: 'alice' };
const bob = { uin: 2, username: 'bob' };
const msg = (fromUin: number, toUin: number, groupId = 0): MessageRow => ({
  msgId: 9, fromUin, clientMsgId: 'c', to: 'x', toUin, groupId, type: 1, content: 'hi', mediaId: null, createTime: 5, senderSeq: 3, revoked: false,
});
const contact = (state: ContactRow['state']): ContactRow => ({ uin: 1, peerUin: 2, state, note: '', updateTime: 0 });

test('a direct message goes to both logs, each filed under the other side; a note to oneself to one log', () => {
  assert.deepEqual(directRecipients(alice, bob), [
    { uin: 1, peer: 'bob' },
    { uin: 2, peer: 'alice' },
  ]);
  assert.deepEqual(directRecipients(alice, alice), [{ uin: 1, peer: 'alice' }]);
});

test('a repeated send answers the first send’s msgId, seq and time, marked duplicate', () => {
  assert.deepEqual(sendAnswer(msg(1, 2), true), { msgId: '9', seq: 3, createTime: 5, duplicate: true });
});

test('a read receipt goes to the other side of the chat, to nobody in a note to oneself, and a message from elsewhere is refused', () => {
  assert.deepEqual(directReadReceipt(msg(2, 1), 1, 2), { receiptUin: 2 });
  assert.deepEqual(directReadReceipt(msg(1, 2), 1, 2), { receiptUin: 2 }, 'reading one’s own sent message still tells the peer');
  assert.deepEqual(directReadReceipt(msg(1, 1), 1, 1), { receiptUin: 0 });
  for (const [m, other] of [[msg(2, 3), 2], [msg(1, 2, 7), 2], [undefined, 2], [msg(2, 1), undefined]] as const) {
    assert.equal((directReadReceipt(m, 1, other) as { ret?: number }).ret, 3);
  }
});

test('a contact request asks, accepts a pending request from the other side, and is refused between contacts', () => {
  assert.equal(contactRequestAction(undefined), 'request');
  assert.equal(contactRequestAction(contact('outgoing')), 'request');
  assert.equal(contactRequestAction(contact('incoming')), 'accept');
  assert.equal((contactRequestAction(contact('accepted')) as { ret: number }).ret, 6);
  assert.equal(contactAcceptRefusal(contact('incoming')), undefined);
  assert.equal(contactAcceptRefusal(contact('accepted'))?.ret, 6);
  assert.equal(contactAcceptRefusal(contact('outgoing'))?.ret, 3);
  assert.equal(contactAcceptRefusal(undefined)?.ret, 3);
});
