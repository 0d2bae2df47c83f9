/**
 * Contacts: requests with a note, accept, decline, remove, block and unblock, and the contact list (with the user's
 * groups and whom they blocked). See docs/protocol.md "Contacts" and "Blocking".
 */
import { blockChange, contactAcceptRefusal, contactRequestAction } from '../core/decisions.ts';
import type { RateCounter, SessionRow, StoreTx, UserRow } from '../core/ports.ts';
import { foldUsername, groupAddress } from '../core/rules.ts';
import { RET } from '../protocol/index.ts';
import { fail, type Body, type Handlers, type ServiceContext } from './context.ts';
import type { Effects } from './group-commit.ts';
import { WRITE_RATES } from './rate-limit.ts';

/** Contact requests, blocks and the contact list. */
export class ContactCalls {
  readonly #c: ServiceContext;
  readonly #requests: RateCounter;

  constructor(c: ServiceContext) {
    this.#c = c;
    const rate = WRITE_RATES.contactRequests;
    this.#requests = c.options.counters.counter('contactRequests', rate.limit, rate.windowMs);
  }

  /** The calls this area serves. */
  handlers(): Handlers {
    return {
      '/api/contacts/request': (s, b) => this.#contactRequest(s, b),
      '/api/contacts/accept': (s, b) => this.#contactAccept(s, b),
      '/api/contacts/decline': (s, b) => this.#contactDecline(s, b),
      '/api/contacts/remove': (s, b) => this.#contactRemove(s, b),
      '/api/contacts/list': (s) => this.#contactList(s),
      '/api/contacts/block': (s, b) => this.#block(s, b, true),
      '/api/contacts/unblock': (s, b) => this.#block(s, b, false),
    };
  }

  async #otherUser(tx: StoreTx, s: SessionRow, name: string): Promise<UserRow> {
    const other = await tx.getUserByName(foldUsername(name));
    if (!other) fail(RET.NOT_FOUND, 'no such user');
    if (other.uin === s.uin) fail(RET.BAD_REQUEST, 'that is you');
    return other;
  }

  /** The other user, with both users' logs locked (every contact change writes both sides). */
  async #lockedPair(tx: StoreTx, fx: Effects, s: SessionRow, name: string): Promise<UserRow> {
    const other = await this.#otherUser(tx, s, name);
    await fx.lock([s.uin, other.uin]);
    return other;
  }

  async #contactRequest(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    await this.#c.throttle(this.#requests, s.uin, 'contact requests');
    await this.#c.gc.run(async (tx, fx) => {
      const other = await this.#lockedPair(tx, fx, s, b.username);
      const action = contactRequestAction(
        await tx.getContact(s.uin, other.uin),
        await tx.getContact(other.uin, s.uin),
        await tx.isBlocked(other.uin, s.uin),
      );
      if (typeof action === 'object') fail(action.ret, action.errMsg);
      if (action === 'pending') return;
      const me = await this.#c.user(s.uin, tx);
      const now = this.#c.clock.now();
      if (action === 'accept') {
        // They asked first: asking back accepts.
        await this.#makeContacts(tx, fx, me, other, now);
        return;
      }
      const note = b.note ?? '';
      await this.#c.putContact(tx, { uin: s.uin, peerUin: other.uin, state: 'outgoing', note, updateTime: now });
      if (action === 'swallow') return;
      await this.#c.putContact(tx, { uin: other.uin, peerUin: s.uin, state: 'incoming', note, updateTime: now });
      await fx.append(other.uin, 'contactRequest', { from: me.username, displayName: me.displayName, note });
    });
    return {};
  }

  /**
   * Block or unblock `b.username` for every device of the caller: the block is stored, a pending request between
   * the two is dropped, and the caller's log gets a `contact` entry with `blocked` (docs/protocol.md "Blocking").
   * A repeat changes nothing and appends nothing.
   */
  async #block(s: SessionRow, b: Body, isBlocking: boolean): Promise<Record<string, unknown>> {
    await this.#c.gc.run(async (tx, fx) => {
      const other = await this.#lockedPair(tx, fx, s, b.username);
      const change = blockChange(await tx.getContact(s.uin, other.uin), await tx.isBlocked(s.uin, other.uin), isBlocking);
      if (!change) return;
      if (isBlocking) await tx.putBlock(s.uin, other.uin, this.#c.clock.now());
      else await tx.deleteBlock(s.uin, other.uin);
      if (change.dropsRequest) {
        await this.#c.deleteContact(tx, s.uin, other.uin);
        await this.#c.deleteContact(tx, other.uin, s.uin);
      }
      await fx.append(s.uin, 'contact', { username: other.username, displayName: other.displayName, ...change.entry });
    });
    return {};
  }

  async #makeContacts(tx: StoreTx, fx: Effects, me: UserRow, other: UserRow, now: number): Promise<void> {
    await this.#c.putContact(tx, { uin: me.uin, peerUin: other.uin, state: 'accepted', note: '', updateTime: now });
    await this.#c.putContact(tx, { uin: other.uin, peerUin: me.uin, state: 'accepted', note: '', updateTime: now });
    await fx.append(me.uin, 'contact', { username: other.username, displayName: other.displayName });
    await fx.append(other.uin, 'contact', { username: me.username, displayName: me.displayName });
  }

  async #contactAccept(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    await this.#c.gc.run(async (tx, fx) => {
      const other = await this.#lockedPair(tx, fx, s, b.username);
      const refusal = contactAcceptRefusal(await tx.getContact(s.uin, other.uin));
      if (refusal) fail(refusal.ret, refusal.errMsg);
      await this.#makeContacts(tx, fx, await this.#c.user(s.uin, tx), other, this.#c.clock.now());
    });
    return {};
  }

  async #contactDecline(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    await this.#c.gc.run(async (tx, fx) => {
      const other = await this.#lockedPair(tx, fx, s, b.username);
      const mine = await tx.getContact(s.uin, other.uin);
      if (mine?.state !== 'incoming') fail(RET.NOT_FOUND, 'no pending request from that user');
      await this.#c.deleteContact(tx, s.uin, other.uin);
      await this.#c.deleteContact(tx, other.uin, s.uin);
      // Own other devices drop the request too.
      await fx.append(s.uin, 'contact', { username: other.username, displayName: other.displayName, removed: true });
    });
    return {};
  }

  async #contactRemove(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    await this.#c.gc.run(async (tx, fx) => {
      const other = await this.#lockedPair(tx, fx, s, b.username);
      const mine = await tx.getContact(s.uin, other.uin);
      if (!mine) fail(RET.NOT_FOUND, 'not a contact');
      const me = await this.#c.user(s.uin, tx);
      await this.#c.deleteContact(tx, s.uin, other.uin);
      await this.#c.deleteContact(tx, other.uin, s.uin);
      await fx.append(s.uin, 'contact', { username: other.username, displayName: other.displayName, removed: true });
      if (mine.state === 'accepted') {
        await fx.append(other.uin, 'contact', { username: me.username, displayName: me.displayName, removed: true });
      }
    });
    return {};
  }

  async #contactList(s: SessionRow): Promise<Record<string, unknown>> {
    const read = this.#c.store.read;
    const rows = await read.listContacts(s.uin);
    const users = new Map((await read.getUsers(rows.map((r) => r.peerUin))).map((u) => [u.uin, u]));
    const pick = (state: string) =>
      rows
        .filter((r) => r.state === state && users.has(r.peerUin))
        .map((r) => ({ username: users.get(r.peerUin)!.username, displayName: users.get(r.peerUin)!.displayName, note: r.note }));
    const groups = [];
    for (const gid of await read.listGroups(s.uin)) {
      const g = await read.getGroup(gid);
      if (g) groups.push({ groupId: groupAddress(gid), name: g.name });
    }
    const blocked = (await read.getUsers(await read.listBlocked(s.uin))).map((u) => ({ username: u.username, displayName: u.displayName }));
    return { contacts: pick('accepted'), incoming: pick('incoming'), outgoing: pick('outgoing'), groups, blocked };
  }
}
