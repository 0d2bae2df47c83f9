// The pure rules of the sync engine, alone.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  checkMembersChange,
  checkRecall,
  checkSendContent,
  clampSyncLimit,
  clampSynccheckTimeout,
  encodeEntry,
  foldUsername,
  nextOwner,
  parseGroupAddress,
  selectorAfter,
} from '../../src/core/rules.ts';
import { mergeDelta } from '../../src/protocol/index.ts';
import type { MessageRow } from '../../src/core/ports.ts';

const msg = (over: Partial<MessageRow> = {}): MessageRow => ({
  msgId: 1, fromUin: 7, clientMsgId: 'c', to: 'bob', toUin: 8, groupId: 0, type: 1, content: 'x', mediaId: null, createTime: 1_000_000, senderSeq: 1, revoked: false, ...over,
});

describe('rules', () => {
  it('folds usernames and parses group addresses', () => {
    assert.equal(foldUsername('Alice_1'), 'alice_1');
    assert.equal(parseGroupAddress('@@42'), 42);
    assert.equal(parseGroupAddress('@@0'), undefined);
    assert.equal(parseGroupAddress('alice'), undefined);
  });

  it('computes the selector of what lies after a key', () => {
    const heads = { head: 10, bySelector: { 1: 10, 2: 4, 4: 7 } };
    assert.equal(selectorAfter(heads, 10), 0);
    assert.equal(selectorAfter(heads, 8), 1);
    assert.equal(selectorAfter(heads, 5), 1 | 4);
    assert.equal(selectorAfter(heads, 0), 1 | 2 | 4);
  });

  it('encodes an entry with seq and kind first, from fields or pre-encoded JSON', () => {
    assert.equal(encodeEntry(3, 'read', { peer: 'a', msgId: '1', by: 'b' }), '{"seq":3,"kind":"read","peer":"a","msgId":"1","by":"b"}');
    assert.equal(encodeEntry(4, 'read', '{"peer":"a"}'), '{"seq":4,"kind":"read","peer":"a"}');
    assert.equal(encodeEntry(5, 'contact', {}), '{"seq":5,"kind":"contact"}');
    fc.assert(fc.property(fc.nat(), fc.dictionary(fc.string().filter((k) => k !== 'seq' && k !== 'kind' && k !== '__proto__'), fc.jsonValue()), (seq, fields) => {
      assert.deepEqual(JSON.parse(encodeEntry(seq, 'msg', fields)), JSON.parse(JSON.stringify({ seq, kind: 'msg', ...fields })));
    }));
  });

  it('checks send content: system type, byte size, empty text, voice duration, media ids', () => {
    assert.equal(checkSendContent(1, 'hi', undefined), undefined);
    assert.equal(checkSendContent(10000, 'x', undefined)?.ret, 1);
    assert.equal(checkSendContent(1, 'é'.repeat(8193), undefined)?.ret, 5, '16 KiB counts UTF-8 bytes');
    assert.equal(checkSendContent(1, 'a'.repeat(16384), undefined), undefined);
    assert.equal(checkSendContent(1, '', undefined)?.ret, 1);
    assert.equal(checkSendContent(34, 'long', 'm1')?.ret, 1);
    assert.equal(checkSendContent(34, '1200', 'm1'), undefined);
    assert.equal(checkSendContent(3, '', undefined)?.ret, 1);
  });

  it('allows recall by the sender within 120 s only', () => {
    assert.equal(checkRecall(undefined, 7, 0)?.ret, 3);
    assert.equal(checkRecall(msg(), 8, 1_000_001)?.ret, 4);
    assert.equal(checkRecall(msg(), 7, 1_000_000 + 120_000), undefined);
    assert.equal(checkRecall(msg(), 7, 1_000_000 + 120_001)?.ret, 4);
  });

  it('lets only the owner add or remove others, anyone leave, and caps groups at 500', () => {
    const members = [1, 2, 3];
    assert.equal(checkMembersChange({ byUin: 2, ownerUin: 1, members, add: [4], remove: [] })?.ret, 4);
    assert.equal(checkMembersChange({ byUin: 2, ownerUin: 1, members, add: [], remove: [3] })?.ret, 4);
    assert.equal(checkMembersChange({ byUin: 2, ownerUin: 1, members, add: [], remove: [2] }), undefined);
    assert.equal(checkMembersChange({ byUin: 9, ownerUin: 1, members, add: [], remove: [9] })?.ret, 4);
    const full = Array.from({ length: 500 }, (_, i) => i + 1);
    assert.equal(checkMembersChange({ byUin: 1, ownerUin: 1, members: full, add: [501], remove: [] })?.ret, 5);
    assert.equal(checkMembersChange({ byUin: 1, ownerUin: 1, members: full, add: [501], remove: [2] }), undefined);
    assert.equal(nextOwner(1, [2, 3]), 2);
    assert.equal(nextOwner(1, [2, 1]), 1);
  });

  it('clamps sync limits and synccheck holds', () => {
    assert.equal(clampSyncLimit(undefined), 200);
    assert.equal(clampSyncLimit(5000), 1000);
    assert.equal(clampSynccheckTimeout(undefined), 25_000);
    assert.equal(clampSynccheckTimeout(120_000), 60_000);
  });

  it('merges a delta: drops entries at or below the key and duplicates, sorts the rest', () => {
    fc.assert(fc.property(fc.nat(50), fc.array(fc.nat(100)), (key, seqs) => {
      const { apply, newKey } = mergeDelta(key, seqs.map((seq) => ({ seq })));
      const expected = [...new Set(seqs.filter((s) => s > key))].sort((a, b) => a - b);
      assert.deepEqual(apply.map((e) => e.seq), expected);
      assert.equal(newKey, expected.at(-1) ?? key);
    }));
  });
});
