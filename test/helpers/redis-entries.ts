/**
 * A node's entry in Redis as src/bus/redis/redis-node-entries.ts keeps it, seen from outside: tests of its users
 * (the directory, the node reports) check that the keys stay where nodes of the previous version read and write
 * theirs, since both versions run side by side during a rolling upgrade.
 */
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';

/** Where a user keeps its entries: `<entryPrefix><id>` and the set of ids `indexKey`. */
export interface EntryKeys {
  entryPrefix: string;
  indexKey: string;
}

/** Writes node `id`'s entry as the previous version's script did (SET with PX, then SADD to the index). */
export async function writeAsPreviousVersion(admin: Redis, keys: EntryKeys, id: string, text: string, ttlMs: number): Promise<void> {
  await admin.set(keys.entryPrefix + id, text, 'PX', ttlMs);
  await admin.sadd(keys.indexKey, id);
}

/** Node `id`'s entry text after checking that it expires within `ttlMs` and that the index holds exactly `ids`. */
export async function readLiveEntry(admin: Redis, keys: EntryKeys, id: string, ttlMs: number, ids: string[]): Promise<string | null> {
  const pttl = await admin.pttl(keys.entryPrefix + id);
  assert.ok(pttl > 0 && pttl <= ttlMs, `${keys.entryPrefix + id} expires within ${ttlMs} ms (PTTL ${pttl})`);
  assert.deepEqual((await admin.smembers(keys.indexKey)).sort(), [...ids].sort());
  return admin.get(keys.entryPrefix + id);
}

/** Checks that node `id`'s entry is gone and that the index holds exactly `ids`. */
export async function assertEntryRemoved(admin: Redis, keys: EntryKeys, id: string, ids: string[]): Promise<void> {
  assert.equal(await admin.exists(keys.entryPrefix + id), 0, `${keys.entryPrefix + id} removed`);
  assert.deepEqual((await admin.smembers(keys.indexKey)).sort(), [...ids].sort());
}
