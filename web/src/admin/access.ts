/**
 * The dashboard's credential (docs/security.md "Admin dashboard"): the admin token (`SYNCHAT_ADMIN_TOKEN`), kept
 * in this tab's sessionStorage only, or the chat app's stored session when its user is in `SYNCHAT_ADMIN_USERS`
 * (read from the app's IndexedDB cache on this origin; the dashboard never writes there).
 */
import { WebCache } from '../cache.ts';
import type { AdminStats } from '../../../src/ops/admin-stats.ts';

/** Where the token is kept: sessionStorage, so it leaves with the tab. */
const TOKEN_KEY = 'synchat-admin-token';

/** A bearer the dashboard may present, and what it is, for the page to say. */
export interface Credential {
  bearer: string;
  kind: 'token' | 'session';
  /** The chat user, for a session. */
  username?: string;
}

/** The credential to try first: a token entered in this tab, else the chat app's session, else none. */
export async function storedCredential(): Promise<Credential | undefined> {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) return { bearer: token, kind: 'token' };
  return chatSession();
}

/** The chat app's session on this browser, if one is signed in. */
export async function chatSession(): Promise<Credential | undefined> {
  const cache = new WebCache();
  try {
    const session = await cache.loadSession();
    return session?.sid ? { bearer: session.sid, kind: 'session', username: session.username } : undefined;
  } catch {
    return undefined; // no IndexedDB (a private window): the token form remains
  } finally {
    await cache.close().catch(() => undefined);
  }
}

/** Keeps (or with '' forgets) the token for this tab. */
export function rememberToken(token: string): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A refusal of the stats route: its ret and errMsg, or a network failure (ret undefined). */
export class StatsError extends Error {
  readonly ret: number | undefined;
  constructor(ret: number | undefined, message: string) {
    super(message);
    this.ret = ret;
  }
  /** The credential was refused (1100: not a token nor a session; 4: not an admin), as opposed to a failure. */
  get isRefusal(): boolean {
    return this.ret === 1100 || this.ret === 1101 || this.ret === 4;
  }
}

/** Reads `/api/admin/stats` with the credential. Throws StatsError. */
export async function fetchStats(credential: Credential, signal?: AbortSignal): Promise<AdminStats> {
  let res: Response;
  try {
    res = await fetch('/api/admin/stats', { headers: { authorization: `Bearer ${credential.bearer}` }, cache: 'no-store', ...(signal ? { signal } : {}) });
  } catch (err) {
    throw new StatsError(undefined, `the server did not answer (${(err as Error).message})`);
  }
  let body: { ret?: number; errMsg?: string };
  try {
    body = (await res.json()) as typeof body;
  } catch {
    throw new StatsError(undefined, `unexpected answer (HTTP ${res.status})`);
  }
  if (body.ret !== 0) throw new StatsError(body.ret, body.errMsg ?? `ret ${body.ret}`);
  return body as AdminStats;
}
