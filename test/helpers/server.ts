/**
 * Test helpers: a real server on ephemeral ports with its own temp data folder, and a small JSON client.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildServer, type CoreSeams, type RunningServer } from '../../src/server/build-server.ts';
import { DEFAULTS, loadConfig, type Config } from '../../src/server/config.ts';
import { createTestDatabase } from './services.ts';

/** A started server and its data folder. */
export interface TestServer extends RunningServer {
  url: string;
  dataDir: string;
  config: Config;
  /** Closes the server and removes its data folder. */
  stop(): Promise<void>;
}

/** With STORE_UNDER_TEST=postgres: each data folder's database, kept across restarts on the same folder. */
const pgDatabases = new Map<string, { url: string; drop(): Promise<void> }>();

/**
 * Starts a one-process server on ephemeral ports; cheap password hashing, rate limiting off unless asked. With
 * `STORE_UNDER_TEST=postgres` every such server stores in a fresh PostgreSQL database of its own (dropped at
 * stop), so the whole suite runs on the PostgreSQL store too. `seams` go to buildServer (e.g. a disk for the store).
 */
export async function startServer(overrides: Partial<Config> = {}, seams: CoreSeams = {}): Promise<TestServer> {
  const dataDir = overrides.dataDir ?? mkdtempSync(join(tmpdir(), 'synchat-test-'));
  let db = pgDatabases.get(dataDir);
  if (!db && process.env.STORE_UNDER_TEST === 'postgres' && overrides.postgresUrl === undefined) {
    db = await createTestDatabase();
    pgDatabases.set(dataDir, db);
  }
  const config = loadConfig({}, {
    ...(db ? { postgresUrl: db.url } : {}),
    httpPort: 0,
    tcpPort: 0,
    workers: 0,
    dataDir,
    logLevel: 'silent',
    passwordLog2N: 10,
    rateLimit: 'off',
    // Every test client connects from 127.0.0.1: one address may hold as many connections as the process.
    maxConnsPerIp: DEFAULTS.maxConns,
    // A test that sets heartbeatMs wants that period on every connection (a dead link seen within seconds): the
    // agreed range shrinks to it, so an SDK's own proposal (27 s by default) is clamped to it too.
    ...(overrides.heartbeatMs !== undefined ? { heartbeatMinMs: overrides.heartbeatMs, heartbeatMaxMs: overrides.heartbeatMs } : {}),
    ...overrides,
  });
  const server = await buildServer(config, seams);
  return Object.assign(server, {
    url: `http://127.0.0.1:${server.httpPort}`,
    dataDir,
    config,
    async stop() {
      await server.close();
      if (overrides.dataDir) return; // The caller keeps the data (a restart): the database stays with it.
      rmSync(dataDir, { recursive: true, force: true });
      pgDatabases.delete(dataDir);
      await db?.drop();
    },
  });
}

/** One JSON answer with its HTTP status. */
export interface Answer {
  status: number;
  headers: Headers;
  body: any;
}

/** POSTs JSON (or GETs with a query) and returns status + parsed body. */
export async function api(base: string, path: string, body?: unknown, sid?: string, method?: 'GET' | 'POST'): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (sid) headers.authorization = `Bearer ${sid}`;
  const m = method ?? (path.startsWith('/api/synccheck') || path.startsWith('/api/gateways') ? 'GET' : 'POST');
  if (m === 'POST') headers['content-type'] = 'application/json';
  const res = await fetch(base + path, { method: m, headers, body: m === 'POST' ? JSON.stringify(body ?? {}) : undefined });
  const text = await res.text();
  let parsed: any;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

/** A logged-in device. */
export interface Device {
  username: string;
  sid: string;
  uin: number;
  syncKey: number;
  epoch: string;
}

/** Registers a user (ignoring "taken") and logs a device in. */
export async function userDevice(base: string, username: string, deviceId = 'dev1', password = 'password-' + username): Promise<Device> {
  await api(base, '/api/register', { username, password, displayName: username.toUpperCase() });
  const r = await api(base, '/api/login', { username, password, deviceId });
  if (r.body.ret !== 0) throw new Error(`login ${username} failed: ${JSON.stringify(r.body)}`);
  return { username: r.body.username, sid: r.body.sid, uin: r.body.uin, syncKey: r.body.syncKey, epoch: r.body.epoch };
}

/** Makes two users contacts. */
export async function befriend(base: string, a: Device, b: Device): Promise<void> {
  const r1 = await api(base, '/api/contacts/request', { username: b.username, note: 'hi' }, a.sid);
  if (r1.body.ret !== 0) throw new Error(JSON.stringify(r1.body));
  const r2 = await api(base, '/api/contacts/accept', { username: a.username }, b.sid);
  if (r2.body.ret !== 0) throw new Error(JSON.stringify(r2.body));
}

/** Syncs every page from `key`; returns all entries and the final key. */
export async function syncAll(base: string, sid: string, key = 0, limit?: number): Promise<{ entries: any[]; syncKey: number }> {
  const entries: any[] = [];
  for (;;) {
    const r = await api(base, '/api/sync', { syncKey: key, ...(limit ? { limit } : {}) }, sid);
    if (r.body.ret !== 0) throw new Error(JSON.stringify(r.body));
    entries.push(...r.body.entries);
    key = r.body.syncKey;
    if (!r.body.continueFlag) return { entries, syncKey: key };
  }
}

/** A burst of sends by `workers` concurrent senders until {@link Burst.stop}: what was attempted and answered. */
export interface Burst {
  /** Answered sends by clientMsgId (their answers). */
  answered: Map<string, any>;
  /** Every clientMsgId sent, answered or not. */
  attempted: string[];
  /** Stops sending; resolves when every sender returned (a sender whose server died returns at once). */
  stop(): Promise<void>;
}

/** Starts a burst from `from` to `to` through `base`; a message's content is `${contentPrefix}${clientMsgId}`. */
export function startBurst(base: string, from: Device, to: string, workers: number, contentPrefix = ''): Burst {
  const answered = new Map<string, any>();
  const attempted: string[] = [];
  let isStopped = false;
  const senders = Array.from({ length: workers }, async (_, w) => {
    for (let i = 0; !isStopped; i++) {
      const clientMsgId = `w${w}-${i}`;
      attempted.push(clientMsgId);
      try {
        const r = await api(base, '/api/sendmsg', { clientMsgId, to, type: 1, content: contentPrefix + clientMsgId }, from.sid);
        if (r.body.ret === 0) answered.set(clientMsgId, r.body);
      } catch {
        return; // the server died under this request
      }
    }
  });
  return {
    answered,
    attempted,
    async stop() {
      isStopped = true;
      await Promise.all(senders);
    },
  };
}
