/**
 * The admin dashboard's data route, `GET /api/admin/stats` (docs/operations.md "Dashboard"): this node's snapshot
 * and every other live node's, for the page at `/admin`. Only the admin token (`SYNCHAT_ADMIN_TOKEN`) or a live
 * session of an admin user (`SYNCHAT_ADMIN_USERS`) may read it; a loopback caller is not trusted for being one
 * (docs/security.md "Admin dashboard"). Refusals are `{ret, errMsg}` through the transport's error handler.
 */
import type { FastifyInstance } from 'fastify';
import { RET, SynchatError } from '../../protocol/index.ts';
import type { ChatApi, Reply } from '../../service/index.ts';
import { isAdminToken } from './admin-access.ts';

/** Options of the admin routes. */
export interface AdminRoutesOptions {
  /** Tells whom a session belongs to (ret 0 with `username`). */
  api: Pick<ChatApi, 'checkSession'>;
  /** The admin token; '' = none. */
  adminToken: string;
  /** Usernames (folded, as stored) whose sessions may read the dashboard; empty = none. */
  adminUsers: ReadonlySet<string>;
  /** The answer: `{ret: 0, nodeId, nodes}` as JSON text (src/ops/admin-stats.ts), built by the node's core. */
  stats(): Promise<Reply>;
}

const NEEDS = 'Authorization: Bearer <SYNCHAT_ADMIN_TOKEN>, or the session of a user in SYNCHAT_ADMIN_USERS';

/**
 * Throws the refusal for `authorization` (the header), or returns when it names the admin token or an admin
 * user's live session. The token is compared in constant time; a session is looked up only when admin users are
 * configured.
 */
export async function checkAdmin(authorization: string | undefined, opts: Omit<AdminRoutesOptions, 'stats'>): Promise<void> {
  if (opts.adminToken === '' && opts.adminUsers.size === 0) {
    throw new SynchatError(RET.FORBIDDEN, 'the admin dashboard is off: set SYNCHAT_ADMIN_TOKEN or SYNCHAT_ADMIN_USERS');
  }
  const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
  if (!m) throw new SynchatError(RET.NOT_LOGGED_IN, `the admin dashboard needs ${NEEDS}`);
  const presented = m[1]!;
  if (isAdminToken(presented, opts.adminToken)) return;
  if (opts.adminUsers.size === 0) throw new SynchatError(RET.NOT_LOGGED_IN, 'not the admin token');
  const session = await opts.api.checkSession(presented);
  if (session.ret !== RET.OK) throw new SynchatError(RET.NOT_LOGGED_IN, `neither the admin token nor a live session: the dashboard needs ${NEEDS}`);
  const { username } = JSON.parse(session.body) as { username?: string };
  if (username === undefined || !opts.adminUsers.has(username)) {
    throw new SynchatError(RET.FORBIDDEN, `${username ?? 'this user'} is not an admin user (SYNCHAT_ADMIN_USERS)`);
  }
}

/** Registers `GET /api/admin/stats` on `app`. */
export function registerAdminRoutes(app: FastifyInstance, opts: AdminRoutesOptions): void {
  app.get('/api/admin/stats', async (req, reply) => {
    await checkAdmin(req.headers.authorization, opts);
    const r = await opts.stats();
    if (r.ret !== RET.OK) throw new SynchatError(RET.SERVER_ERROR);
    reply.code(200).header('content-type', 'application/json; charset=utf-8').header('cache-control', 'no-store').send(r.body);
  });
}
