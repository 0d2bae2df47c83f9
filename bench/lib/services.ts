/**
 * The services a PostgreSQL or multi-node target runs on, seen from the bench: a fresh PostgreSQL database per
 * run (created and dropped with `pg`), the PostgreSQL and Redis versions for the record, PostgreSQL's own
 * counters (WAL bytes, write transactions), and the processes whose CPU counts as PostgreSQL's and Redis's,
 * found in /proc by their command name (the bench runs on the same machine as both, as root).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import pg from 'pg';

/** Where the bench finds PostgreSQL (any database of the server: the bench connects to it to create its own). */
export const DEFAULT_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
/** Where the bench finds Redis. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** A database made for one run. */
export interface BenchDatabase {
  /** The URL the nodes get (`SYNCHAT_POSTGRES_URL`): the admin URL with this database's name. */
  url: string;
  name: string;
  /** `SHOW server_version`. */
  version: string;
  /** PostgreSQL's counters now. */
  counters(): Promise<PgCounters>;
  /**
   * What each client backend of this database (the nodes' connections) is doing now, as
   * `<state>:<wait event type>:<wait event>` (e.g. `idle in transaction:Client:ClientRead`: waiting for its node
   * inside a transaction; `active:Lock:transactionid`: waiting for another transaction's row lock).
   */
  backendStates(): Promise<string[]>;
  /** Closes the bench's connection and drops the database (`WITH (FORCE)`: a node left connected does not stop it). */
  drop(): Promise<void>;
}

/**
 * Cumulative PostgreSQL counters of the whole server (other databases' work included), read at once (the
 * statistics views lag: a busy backend reports them at most once a second); a step records their growth per
 * message.
 */
export interface PgCounters {
  /** WAL written: the current WAL position (`pg_current_wal_lsn()`), bytes. */
  walBytes: number;
  /** Transactions that wrote: the next transaction id (`pg_snapshot_xmax` of the current snapshot; read-only ones take none). */
  writeTransactions: number;
}

/**
 * Creates `synchat_bench_<time>` on the server of `adminUrl` (an empty database: the first node migrates it,
 * src/storage/postgres). The bench keeps one connection to it for {@link BenchDatabase.counters}.
 */
export async function createBenchDatabase(adminUrl: string): Promise<BenchDatabase> {
  const name = `synchat_bench_${Date.now()}`;
  const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(`PostgreSQL is not reachable at ${adminUrl}: ${(err as Error).message}`);
  }
  let version: string;
  try {
    version = (await admin.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  const url = u.toString();
  const probe = new pg.Client({ connectionString: url, application_name: 'synchat-bench-probe' });
  await probe.connect();
  return {
    url,
    name,
    version,
    async counters() {
      const { rows } = await probe.query<{ wal: string; xid: string }>(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text AS wal, pg_snapshot_xmax(pg_current_snapshot())::text AS xid",
      );
      return { walBytes: Number(rows[0]!.wal), writeTransactions: Number(rows[0]!.xid) };
    },
    async backendStates() {
      const { rows } = await probe.query<{ s: string }>(
        "SELECT state || ':' || coalesce(wait_event_type, '-') || ':' || coalesce(wait_event, '-') AS s FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
      );
      return rows.map((r) => r.s);
    },
    async drop() {
      await probe.end().catch(() => undefined);
      const c = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** `redis_version` from `INFO server`. */
export async function redisVersion(url: string): Promise<string> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 5000 });
  try {
    await r.connect();
    return /redis_version:(\S+)/.exec(await r.info('server'))?.[1] ?? 'unknown';
  } catch (err) {
    throw new Error(`Redis is not reachable at ${url}: ${(err as Error).message}`);
  } finally {
    r.disconnect();
  }
}

/** Every process whose command name (/proc/<pid>/comm) is `comm` and whose title (command line) `accept` accepts. */
export function processesNamed(comm: string, accept: (title: string) => boolean = () => true): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trimEnd() !== comm) continue;
      if (!accept(readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' '))) continue;
      out.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Every PostgreSQL process (postmaster, background workers, every backend of every database). */
export function postgresPids(): number[] {
  return processesNamed('postgres');
}

/**
 * The backends of databases other than `database` (a backend's title is `postgres: <cluster>: <user> <db>
 * <client>(<port>) <state>`): work that is not the run's but is counted in {@link postgresPids}, recorded apart
 * so that a noisy neighbour shows.
 */
export function otherDatabaseBackends(database: string): number[] {
  return processesNamed('postgres', (title) => {
    const db = /^postgres: [^:]+: \S+ (\S+) (?:\[local\]|[\d.:a-f]+\(\d+\))/.exec(title)?.[1];
    return db !== undefined && db !== database;
  });
}

/** The redis-server process(es) listening on the port of `url` (its title is `redis-server <host>:<port>`). */
export function redisPids(url: string): number[] {
  const port = new URL(url).port || '6379';
  const listening = new RegExp(`:${port}(?:\\s|$)`);
  return processesNamed('redis-server', (title) => listening.test(title));
}
