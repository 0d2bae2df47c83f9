// The pure rules of the sync engine, alone.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  checkGroupSize,
  checkMembersChange,
  checkRecall,
  checkShownName,
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
    assert.deepEqual(checkRecall(msg(), 8, 1_000_001), checkRecall(undefined, 8, 1_000_001), 'someone else’s message answers as an unknown one');
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
    assert.equal(checkGroupSize(500), undefined, 'the creator plus 499');
    assert.equal(checkGroupSize(501)?.ret, 5, 'the creator plus 500 contacts');
    assert.equal(nextOwner(1, [2, 3]), 2);
    assert.equal(nextOwner(1, [2, 1]), 1);
  });

  describe('shown names (display, device and group names)', () => {
    const CONTROLS = fc.oneof(fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0x7f, max: 0x9f }), fc.constantFrom(0x2028, 0x2029));
    const BIDI = fc.constantFrom(0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069);
    const INVISIBLE = fc.constantFrom(' ', '\u00a0', '\u00ad', '\u034f', '\u115f', '\u180e', '\u200b', '\u200c', '\u200d', '\u200e', '\u2060', '\u2063', '\u2800', '\u3164', '\ufe0f', '\ufeff', '\uffa0', '\u{e0041}', '\u3000');
    const VISIBLE = fc.constantFrom('a', 'Z', '7', 'é', '李', 'Ж', '😀', '👩‍💻', '_', '.');
    const refusal = (r: string | { ret: number; errMsg: string }) => (typeof r === 'string' ? undefined : r);

    it('refuses any name holding a control or bidi-override character, wherever it is', () => {
      fc.assert(fc.property(fc.string(), fc.oneof(CONTROLS, BIDI), fc.string(), (before, cp, after) => {
        const r = refusal(checkShownName('displayName', `x${before}${String.fromCodePoint(cp)}${after}x`));
        assert.equal(r?.ret, 1);
        assert.match(r!.errMsg, /^displayName: /);
      }));
    });

    it('refuses a name made only of white space and invisible characters', () => {
      fc.assert(fc.property(fc.array(INVISIBLE, { minLength: 1, maxLength: 20 }), (parts) => {
        const r = refusal(checkShownName('name', parts.join('')));
        assert.equal(r?.ret, 1);
        assert.match(r!.errMsg, /^name: must (not be blank|contain a visible character)$/);
      }));
    });

    it('accepts, trimmed, any name with a visible character among invisible ones (no control or bidi)', () => {
      fc.assert(fc.property(fc.array(INVISIBLE, { maxLength: 5 }), VISIBLE, fc.array(fc.oneof(INVISIBLE, VISIBLE), { maxLength: 10 }), (pre, v, post) => {
        const raw = pre.join('') + v + post.join('');
        assert.equal(checkShownName('deviceName', raw), raw.trim());
      }));
      assert.equal(checkShownName('name', '  Alice Smith  '), 'Alice Smith');
    });
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
