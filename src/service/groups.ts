/**
 * Groups of up to 500: create, add/remove members (owner hand-over when the owner leaves), rename; every change is
 * announced to every member's log. See docs/protocol.md "Groups".
 */
import { groupAddRefusal } from '../core/decisions.ts';
import type { GroupRow, RateCounter, SessionRow, StoreTx, UserRow } from '../core/ports.ts';
import { checkGroupSize, checkMembersChange, foldUsername, groupAddress, isAcceptedContact, nextOwner, parseGroupAddress } from '../core/rules.ts';
import { RET } from '../protocol/index.ts';
import { fail, shownName, type Body, type Handlers, type ServiceContext } from './context.ts';
import type { Effects } from './group-commit.ts';
import { WRITE_RATES } from './rate-limit.ts';

/** Group lifecycle. */
export class GroupCalls {
  readonly #c: ServiceContext;
  /** Creates, member changes and renames: each lands in every member's log. */
  readonly #changes: RateCounter;

  constructor(c: ServiceContext) {
    this.#c = c;
    this.#changes = c.options.counters.counter('groupChanges', WRITE_RATES.groupChanges.limit, WRITE_RATES.groupChanges.windowMs);
  }

  /** The calls this area serves. */
  handlers(): Handlers {
    return {
      '/api/groups/create': (s, b) => this.#groupCreate(s, b),
      '/api/groups/members': (s, b) => this.#groupMembers(s, b),
      '/api/groups/rename': (s, b) => this.#groupRename(s, b),
      '/api/groups/info': (s, b) => this.#groupInfo(s, b),
    };
  }

  /** The caller's contacts to add, by name; refused for a non-contact and for one who blocked the caller. */
  async #contactsByName(tx: StoreTx, s: SessionRow, names: readonly string[]): Promise<UserRow[]> {
    const users: UserRow[] = [];
    for (const name of new Set(names.map(foldUsername))) {
      const u = await tx.getUserByName(name);
      if (!u) fail(RET.NOT_FOUND, `no such user: ${name}`);
      if (u.uin !== s.uin && !isAcceptedContact(await tx.getContact(s.uin, u.uin))) fail(RET.FORBIDDEN, `not a contact: ${name}`);
      users.push(u);
    }
    const refusal = groupAddRefusal(users, await tx.blockersAmong(s.uin, users.map((u) => u.uin)));
    if (refusal) fail(refusal.ret, refusal.errMsg);
    return users;
  }

  /**
   * The group and its members, read again under the locks of every member's log (a change of members locks them
   * all, so what is read here holds until commit). Refuses a caller who is not a member.
   */
  async #lockedGroup(tx: StoreTx, fx: Effects, s: SessionRow, groupId: number): Promise<{ g: GroupRow; members: number[] }> {
    await fx.lock([s.uin, ...(await tx.getMembers(groupId))]);
    const g = await tx.getGroup(groupId);
    const members = g ? await tx.getMembers(groupId) : [];
    if (!g || !members.includes(s.uin)) fail(RET.FORBIDDEN, 'not a member of this group');
    await fx.lock(members);
    return { g, members };
  }

  /** Appends the group as it now is to every member's log, and a removal to each of `removed`. */
  async #announceGroup(tx: StoreTx, fx: Effects, groupId: number, removed: readonly number[] = []): Promise<void> {
    const g = (await tx.getGroup(groupId))!;
    const members = await tx.getMembers(groupId);
    const names: string[] = [];
    for (const uin of members) names.push(await this.#c.username(uin, tx));
    await fx.appendEach(members, 'group', { groupId: groupAddress(groupId), name: g.name, members: names, owner: await this.#c.username(g.ownerUin, tx) });
    if (removed.length > 0) await fx.appendEach(removed, 'group', { groupId: groupAddress(groupId), name: g.name, members: names, removed: true });
  }

  async #groupCreate(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const name = shownName('name', b.name);
    await this.#c.throttle(this.#changes, s.uin, 'group changes');
    const groupId = await this.#c.gc.run(async (tx, fx) => {
      const others = (await this.#contactsByName(tx, s, b.members)).filter((u) => u.uin !== s.uin);
      const tooLarge = checkGroupSize(1 + others.length);
      if (tooLarge) fail(tooLarge.ret, tooLarge.errMsg);
      await fx.lock([s.uin, ...others.map((u) => u.uin)]);
      const now = this.#c.clock.now();
      const id = await tx.nextGroupId();
      await tx.putGroup({ groupId: id, name, ownerUin: s.uin, createTime: now });
      await tx.addMembers(id, [s.uin], now);
      await tx.addMembers(id, others.map((u) => u.uin), now);
      await this.#announceGroup(tx, fx, id);
      return id;
    });
    return { groupId: groupAddress(groupId) };
  }

  async #groupMembers(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const groupId = parseGroupAddress(b.groupId)!;
    await this.#c.throttle(this.#changes, s.uin, 'group changes');
    await this.#c.gc.run(async (tx, fx) => {
      const { g, members } = await this.#lockedGroup(tx, fx, s, groupId);
      const add = (await this.#contactsByName(tx, s, b.add ?? [])).map((u) => u.uin).filter((u) => !members.includes(u));
      await fx.lock(add);
      const remove: number[] = [];
      for (const name of b.remove ?? []) {
        const u = await tx.getUserByName(foldUsername(name));
        if (u && members.includes(u.uin)) remove.push(u.uin);
      }
      const refusal = checkMembersChange({ byUin: s.uin, ownerUin: g.ownerUin, members, add, remove });
      if (refusal) fail(refusal.ret, refusal.errMsg);
      if (add.length === 0 && remove.length === 0) return;
      const now = this.#c.clock.now();
      await tx.removeMembers(groupId, remove);
      await tx.addMembers(groupId, add, now);
      const owner = nextOwner(g.ownerUin, await tx.getMembers(groupId));
      if (owner !== g.ownerUin) await tx.putGroup({ ...g, ownerUin: owner });
      await this.#announceGroup(tx, fx, groupId, remove);
    });
    return {};
  }

  /** `/api/groups/info`: the group's name, owner and members with their shown names (members only). */
  async #groupInfo(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const groupId = parseGroupAddress(b.groupId)!;
    const read = this.#c.store.read;
    const g = await read.getGroup(groupId);
    const members = g ? await read.getMembers(groupId) : [];
    if (!g || !members.includes(s.uin)) fail(RET.FORBIDDEN, 'not a member of this group');
    const users = new Map((await read.getUsers(members)).map((u) => [u.uin, u]));
    return {
      groupId: groupAddress(groupId),
      name: g.name,
      owner: users.get(g.ownerUin)?.username ?? '',
      members: members.filter((uin) => users.has(uin)).map((uin) => ({ username: users.get(uin)!.username, displayName: users.get(uin)!.displayName })),
    };
  }

  async #groupRename(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const groupId = parseGroupAddress(b.groupId)!;
    const name = shownName('name', b.name);
    await this.#c.throttle(this.#changes, s.uin, 'group changes');
    await this.#c.gc.run(async (tx, fx) => {
      const { g } = await this.#lockedGroup(tx, fx, s, groupId);
      await tx.putGroup({ ...g, name });
      await this.#announceGroup(tx, fx, groupId);
    });
    return {};
  }
}
