/**
 * Creating the simulated population over the HTTP API (the same calls a client makes): register each user and
 * log it in on as many devices as it needs (one session per simulated device: sessions are never shared between
 * connections; password hashing is deliberately slow, so the bench server runs a lowered scrypt cost and records
 * it, see BENCH_SERVER_ENV in proc.ts), make contacts (request + accept) and groups (created by a "hub" user who
 * befriends every member first, since group members must be the creator's contacts).
 */
import { call } from './proc.ts';

/** A logged-in simulated user. */
export interface SimUser {
  username: string;
  uin: number;
  /** One sid per logged-in device. */
  sids: string[];
}

const PASSWORD = 'bench-password';

/** Runs `fn` over `items` with at most `concurrency` in flight. */
export async function pooled<T>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}

async function ok(p: Promise<any>, what: string): Promise<any> {
  const r = await p;
  if (r.ret !== 0) throw new Error(`${what}: ret ${r.ret} ${r.errMsg ?? ''}`);
  return r;
}

/** Registers `names` and logs each in on `devices` devices; `onDone` counts progress. */
export async function registerUsers(base: string, names: readonly string[], devices = 1, onDone: (n: number) => void = () => {}, concurrency = 16): Promise<SimUser[]> {
  const users: SimUser[] = new Array(names.length);
  let done = 0;
  await pooled(names, concurrency, async (username, i) => {
    const reg = await call(base, '/api/register', { username, password: PASSWORD, displayName: username });
    // ret 6 (conflict): registered by an earlier run against the same --url server; log in anyway.
    if (reg.ret !== 0 && reg.ret !== 6) throw new Error(`register ${username}: ret ${reg.ret} ${reg.errMsg ?? ''}`);
    const sids: string[] = [];
    let uin = reg.uin ?? 0;
    for (let d = 0; d < devices; d++) {
      const l = await ok(call(base, '/api/login', { username, password: PASSWORD, deviceId: `bench-${d}` }), `login ${username}`);
      sids.push(l.sid);
      uin = l.uin;
    }
    users[i] = { username, uin, sids };
    onDone(++done);
  });
  return users;
}

/** Makes `a` and `b` contacts (a requests, b accepts). */
export async function befriend(base: string, a: SimUser, b: SimUser): Promise<void> {
  await ok(call(base, '/api/contacts/request', { username: b.username }, a.sids[0]), `contact request ${a.username}→${b.username}`);
  await ok(call(base, '/api/contacts/accept', { username: a.username }, b.sids[0]), `contact accept ${b.username}`);
}

/** Befriends many pairs in parallel. */
export async function befriendAll(base: string, pairs: readonly [SimUser, SimUser][], onDone: (n: number) => void = () => {}, concurrency = 32): Promise<void> {
  let done = 0;
  await pooled(pairs, concurrency, async ([a, b]) => {
    await befriend(base, a, b);
    onDone(++done);
  });
}

/** Creates a group owned by `hub` (who must already be every member's contact); returns its `@@id`. */
export async function createGroup(base: string, hub: SimUser, name: string, members: readonly SimUser[]): Promise<string> {
  const r = await ok(call(base, '/api/groups/create', { name, members: members.map((m) => m.username) }, hub.sids[0]), `create group ${name}`);
  return r.groupId as string;
}

/** A short random tag so repeated runs against one `--url` server use fresh usernames. */
export function runTag(): string {
  return Math.random().toString(36).slice(2, 7);
}
