/**
 * Who may read the operator routes (`/metrics`, and the admin dashboard's): PROTOCOL.md "HTTP" — callers on
 * loopback, and others presenting `Authorization: Bearer <SYNCHAT_ADMIN_TOKEN>`. The caller is `req.ip`, so behind
 * a proxy in SYNCHAT_TRUST_PROXY the client it names is judged, not the proxy. See docs/security.md "Operator routes".
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { FastifyRequest } from 'fastify';
import { RET, SynchatError } from '../../protocol/index.ts';

/** True for 127.0.0.0/8, ::1 and their IPv4-mapped form. */
export function isLoopbackAddress(ip: string): boolean {
  const v4 = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  if (isIP(v4) === 4) return v4.startsWith('127.');
  return ip === '::1';
}

/** SHA-256 of a token: equal-length inputs for timingSafeEqual whatever the lengths presented. */
function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** True when `presented` is `adminToken` (not ''), compared in constant time through their SHA-256. */
export function isAdminToken(presented: string, adminToken: string): boolean {
  return adminToken !== '' && timingSafeEqual(digest(presented), digest(adminToken));
}

/**
 * The refusal for a caller that may not read an operator route, or undefined when it may. `adminToken` '' lets
 * loopback callers only. The presented token is compared in constant time (through its SHA-256, so its length
 * tells nothing either).
 */
export function adminRefusal(req: FastifyRequest, adminToken: string): SynchatError | undefined {
  if (isLoopbackAddress(req.ip)) return undefined;
  if (adminToken === '') return new SynchatError(RET.FORBIDDEN, 'operator routes answer loopback callers only (SYNCHAT_ADMIN_TOKEN is not set)');
  const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return new SynchatError(RET.NOT_LOGGED_IN, 'operator routes need Authorization: Bearer <SYNCHAT_ADMIN_TOKEN> from this address');
  if (!isAdminToken(m[1]!, adminToken)) return new SynchatError(RET.FORBIDDEN, 'wrong admin token');
  return undefined;
}
