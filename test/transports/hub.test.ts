// The per-process event router: news and fan-outs reach the listeners of their users, in order, and a listener
// that attached while events were in flight finds them (and its session's end) when it listens.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SubscriptionRegistry, type AttachReply, type BusEvent, type ChatApi, type NewsEvent, type PendingReply, type Reply } from '../../src/service/index.ts';
import { Hub, type HubListener, type HubMark } from '../../src/transports/hub.ts';

/** A ChatApi whose events the test emits itself (it implements the real interface; nothing else is used). */
class EventSource implements ChatApi {
  readonly listeners = new Set<(events: readonly BusEvent[]) => void>();
  emit(events: BusEvent[]): void {
    for (const l of this.listeners) l(events);
  }
  async call(): Promise<Reply> {
    throw new Error('not used');
  }
  async attach(): Promise<AttachReply> {
    throw new Error('not used');
  }
  async checkSession(): Promise<Reply> {
    throw new Error('not used');
  }
  pollQrLogin(): PendingReply {
    throw new Error('not used');
  }
  ack(): void {}
  onEvents(listener: (events: readonly BusEvent[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

function listener(uin: number, got: NewsEvent[]): HubListener {
  return { uin, sessionId: `s${uin}`, subscription: undefined, onNews: (n) => got.push(n), onSessionEnded: () => {} };
}

const fanout = (uins: number[], seqs: number[]): BusEvent => ({ type: 'fanout', fanout: { kind: 'msg', selector: 1, fields: '{"to":"@@1"}', uins, seqs } });

test('expands a fan-out only for the members with a listener here, each with the entry its log stored', () => {
  const api = new EventSource();
  const hub = new Hub(api);
  const got2: NewsEvent[] = [];
  const got9: NewsEvent[] = [];
  const subs = new SubscriptionRegistry();
  hub.listen(listener(2, got2), subs.add(2), hub.mark(), 0);
  hub.listen(listener(9, got9), subs.add(9), hub.mark(), 0);
  api.emit([
    { type: 'news', news: { uin: 2, prevSeq: 4, head: 5, selector: 1, entries: ['{"seq":5}'] } },
    fanout([1, 2, 5, 9], [10, 6, 3, 41]),
  ]);
  assert.deepEqual(got2, [
    { uin: 2, prevSeq: 4, head: 5, selector: 1, entries: ['{"seq":5}'] },
    { uin: 2, prevSeq: 5, head: 6, selector: 1, entries: ['{"seq":6,"kind":"msg","to":"@@1"}'] },
  ]);
  assert.deepEqual(got9, [{ uin: 9, prevSeq: 40, head: 41, selector: 1, entries: ['{"seq":41,"kind":"msg","to":"@@1"}'] }]);
  hub.close();
});

/** The news `listen` replays to a new listener of `uin` at `key` since `mark`. */
function missedNews(hub: Hub, mark: HubMark, uin: number, key: number): NewsEvent[] {
  const missed = hub.listen(listener(uin, []), new SubscriptionRegistry().add(uin), mark, key);
  assert.ok(missed !== 'overflow' && 'news' in missed, JSON.stringify(missed));
  return missed.news;
}

test('listen replays a user’s entries from fan-outs and news after the mark and beyond the key, by binary search', () => {
  const api = new EventSource();
  const hub = new Hub(api);
  api.emit([fanout([1, 3], [1, 1])]);
  const mark = hub.mark();
  const members = Array.from({ length: 500 }, (_, i) => 2 * i + 1);
  api.emit([
    fanout(members, members.map(() => 2)),
    { type: 'news', news: { uin: 7, prevSeq: 2, head: 4, selector: 1, entries: ['{"seq":3}', '{"seq":4}'] } },
    fanout([4, 7], [9, 5]),
  ]);
  assert.deepEqual(
    missedNews(hub, mark, 7, 2).map((n) => n.head),
    [4, 5],
    'the key 2 already holds the first fan-out’s entry; news and the later fan-out remain',
  );
  assert.deepEqual(missedNews(hub, mark, 999, 0), [{ uin: 999, prevSeq: 1, head: 2, selector: 1, entries: ['{"seq":2,"kind":"msg","to":"@@1"}'] }]);
  assert.deepEqual(missedNews(hub, mark, 2, 0), [], 'not a member');
  hub.close();
});

test('a listener that leaves releases its subscription once, however often it is removed', () => {
  const api = new EventSource();
  const hub = new Hub(api);
  const subs = new SubscriptionRegistry();
  const a = listener(5, []);
  const b = listener(5, []);
  hub.listen(a, subs.add(5), hub.mark(), 0);
  hub.listen(b, subs.add(5), hub.mark(), 0);
  hub.remove(a);
  hub.remove(a);
  assert.equal(subs.has(5), true, 'the second device still listens');
  hub.remove(b);
  assert.equal(subs.has(5), false);
  assert.equal(hub.size, 0);
  hub.close();
});

test('a listener whose session ended after the mark is refused with the end’s ret and its subscription released', () => {
  const api = new EventSource();
  const hub = new Hub(api);
  const subs = new SubscriptionRegistry();
  const ended = (sessionId: string, ret: number): BusEvent => ({ type: 'sessionEnded', ended: { sessionId, uin: 5, ret } });
  api.emit([ended('s5', 1100)]);
  const mark = hub.mark();
  // An end before the mark was seen by the attach itself (the service refuses it); another session's end is not this one's.
  assert.ok('news' in (hub.listen(listener(5, []), subs.add(5), mark, 0) as object));
  api.emit([ended('other', 1100), ended('s5', 1101)]);
  const late = listener(5, []);
  assert.deepEqual(hub.listen(late, subs.add(5), mark, 0), { endedRet: 1101 });
  assert.equal(late.subscription, undefined, 'not registered');
  assert.equal(hub.size, 1, 'only the listener from before the end');
  assert.equal(hub.listenersOf(5).includes(late), false);
  hub.close();
});

test('more session ends since the mark than the hub keeps: the listener is registered and told to sync everything', () => {
  const api = new EventSource();
  const hub = new Hub(api);
  const mark = hub.mark();
  api.emit(Array.from({ length: 4097 }, (_, i): BusEvent => ({ type: 'sessionEnded', ended: { sessionId: `x${i}`, uin: 1, ret: 1100 } })));
  const l = listener(5, []);
  assert.equal(hub.listen(l, new SubscriptionRegistry().add(5), mark, 0), 'overflow');
  assert.deepEqual(hub.listenersOf(5), [l], 'registered: its sync, a call, finds an end the hub could not see');
  hub.close();
});
