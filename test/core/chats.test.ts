// Pure rules behind /api/chats and /api/avatar (src/core/chats.ts, src/core/avatar.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { avatarSvg, initialsOf } from '../../src/core/avatar.ts';
import { addLatestChats, type ChatSummary } from '../../src/core/chats.ts';

const msg = (seq: number, peer: string) => ({ kind: 'msg', json: JSON.stringify({ seq, kind: 'msg', msgId: String(seq * 10), peer, createTime: seq }) });

describe('addLatestChats', () => {
  it('keeps the first (latest) message of each peer across pages, skips other kinds, and stops at the limit', () => {
    const found = new Map<string, ChatSummary>();
    assert.equal(addLatestChats(found, [msg(9, 'bob'), { kind: 'read', json: '{}' }, msg(8, '@@2'), msg(7, 'bob')], 3), false);
    assert.equal(addLatestChats(found, [msg(5, 'carol'), msg(4, 'dave')], 3), true);
    assert.deepEqual([...found.values()].map((c) => [c.peer, c.msgId]), [['bob', '90'], ['@@2', '80'], ['carol', '50']]);
  });

  it('with onlyPeer, finds that conversation alone', () => {
    const found = new Map<string, ChatSummary>();
    assert.equal(addLatestChats(found, [msg(9, 'bob'), msg(8, '@@2'), msg(7, '@@2')], 1, '@@2'), true);
    assert.deepEqual([...found.keys()], ['@@2']);
    assert.equal(found.get('@@2')!.msgId, '80');
  });
});

describe('avatars', () => {
  it('takes up to two initials, and the same id always gets the same picture', () => {
    assert.equal(initialsOf('alice'), 'A');
    assert.equal(initialsOf('  Bob   van Dyke '), 'BV');
    assert.equal(initialsOf('élodie ünal'), 'ÉÜ');
    assert.equal(initialsOf('!!! ???'), '?');
    assert.equal(avatarSvg('alice', 'Alice'), avatarSvg('alice', 'Alice'));
    assert.doesNotMatch(avatarSvg('x', '<script>'), /<script/);
  });
});
