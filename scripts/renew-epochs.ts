/**
 * `npm run renew-epochs -- --data-dir ./data` (or `--postgres-url postgres://…`; by default the SYNCHAT_DATA_DIR
 * and SYNCHAT_POSTGRES_URL settings): run after a backup was restored, while every server is stopped. Gives every
 * user's log a new epoch, so that each device, at its next AUTH, sync or synccheck, sees an epoch other than the
 * one it stored and resyncs from key 0 (docs/protocol.md "Epoch"). Without it a device whose key is behind the
 * restored head but was issued after the backup (it saw entries the restore took back) syncs on from that key and
 * never receives the new entries that took those seqs. Restore procedure: docs/deploy.md "Backups and restore".
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { Store } from '../src/core/ports.ts';
import { loadConfig } from '../src/server/config.ts';
import { newEpoch } from '../src/service/context.ts';
import { PostgresStore } from '../src/storage/postgres/postgres-store.ts';
import { SqliteStore } from '../src/storage/sqlite/sqlite-store.ts';

/** Where the store is: a PostgreSQL URL, or the data folder of the embedded SQLite store. */
export interface StoreLocation {
  dataDir: string;
  postgresUrl: string;
}

/** Renews every user's epoch in one transaction; returns how many users and the new epoch. */
export async function renewEveryEpoch(at: StoreLocation): Promise<{ users: number; epoch: string }> {
  let store: Store;
  if (at.postgresUrl) {
    store = await PostgresStore.open({ url: at.postgresUrl });
  } else {
    const file = join(resolve(at.dataDir), 'synchat.db');
    // Opening would create an empty database: a mistyped folder must not pass for a renewed one.
    if (!existsSync(file)) throw new Error(`no database at ${file}`);
    store = new SqliteStore({ file });
  }
  try {
    const epoch = newEpoch();
    const users = await store.transaction((tx) => tx.renewEpochs(epoch));
    return { users, epoch };
  } finally {
    await store.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'data-dir': { type: 'string' }, 'postgres-url': { type: 'string' } } });
  const overrides: { dataDir?: string; postgresUrl?: string } = {};
  if (values['data-dir'] !== undefined) overrides.dataDir = values['data-dir'];
  if (values['postgres-url'] !== undefined) overrides.postgresUrl = values['postgres-url'];
  const config = loadConfig(process.env, overrides);
  const { users, epoch } = await renewEveryEpoch(config);
  const where = config.postgresUrl ? 'the PostgreSQL database' : join(resolve(config.dataDir), 'synchat.db');
  console.log(`Renewed the epoch of ${users} users in ${where} (now ${epoch}): every device resyncs from key 0 at its next sync.`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err) => {
    console.error('renew-epochs:', err?.message ?? err);
    process.exit(1);
  });
}
