/**
 * The external services some tests need (PostgreSQL, Redis): whether they are reachable, and a throwaway
 * PostgreSQL database per test. A test that needs a missing service skips with the reason, except under
 * CI=true, where `.ci/run` starts the services and a missing one fails the run instead.
 */
import net from 'node:net';
import pg from 'pg';

/** The local PostgreSQL server tests use (trust auth). */
export const POSTGRES_ADMIN_URL = process.env.SYNCHAT_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/** The local Redis server tests use. */
export const REDIS_URL = process.env.SYNCHAT_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

function canConnect(url: string, defaultPort: number): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: u.hostname, port: Number(u.port || defaultPort) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * `skip` option for a suite that needs `what`: undefined when reachable, else the reason; throws under CI=true,
 * so a CI run without the service fails instead of passing with the suite skipped.
 */
async function requireService(what: string, url: string, defaultPort: number): Promise<string | undefined> {
  if (await canConnect(url, defaultPort)) return undefined;
  const reason = `${what} is not reachable at ${url}`;
  if (process.env.CI === 'true') throw new Error(`${reason}; CI=true requires it (.ci/run starts it)`);
  return `${reason}: skipped (start it to run these tests)`;
}

/** See {@link requireService}. */
export function requirePostgres(): Promise<string | undefined> {
  return requireService('PostgreSQL', POSTGRES_ADMIN_URL, 5432);
}

/** See {@link requireService}. */
export function requireRedis(): Promise<string | undefined> {
  return requireService('Redis', REDIS_URL, 6379);
}

let databases = 0;

/** Creates an empty database; returns its URL and the function that drops it. */
export async function createTestDatabase(prefix = 'synchat_test'): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${process.pid}_${Date.now().toString(36)}_${databases++}`;
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
