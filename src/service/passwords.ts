/**
 * Password hashing with scrypt (node:crypto, run on libuv's thread pool so the event loop stays free).
 * Format: `scrypt$<log2N>$<r>$<p>$<salt b64url>$<hash b64url>`, so the cost can rise without a migration: a login
 * whose stored hash costs less than the current setting stores a new one ({@link needsRehash}).
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Semaphore } from './semaphore.ts';

const KEY_BYTES = 32;
const SALT_BYTES = 16;
/** scrypt's block size and parallelism: OWASP's password storage cheat sheet pairs N = 2^17 with r = 8, p = 1. */
const R = 8;
const P = 1;

/**
 * Hashes computed at once, at most: half the cores (at least 1). scrypt needs 128 × N × r bytes, 128 MiB each at
 * N = 2^17, and libuv's pool runs 4 at once by default: without a bound 4 logins hold 512 MiB and every core, and
 * a burst of logins (or of guesses from many addresses) starves the event loop. With half the cores, hashing
 * never takes more than half the CPU and holds 128 MiB a core pair; further hashes wait here, in arrival order
 * (BENCHMARKS.md "Issue 11": 440-550 ms a hash at 2^17 on the 2-core machine, so one hash in flight at a time).
 */
export const MAX_CONCURRENT_HASHES = Math.max(1, Math.floor(availableParallelism() / 2));
const hashing = new Semaphore(MAX_CONCURRENT_HASHES);

function scryptAsync(password: string, salt: Buffer, log2N: number, r: number, p: number): Promise<Buffer> {
  const N = 2 ** log2N;
  return hashing.run(
    () =>
      new Promise((resolve, reject) => {
        scrypt(password, salt, KEY_BYTES, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
      }),
  );
}

/** Hashes a password with a fresh salt. `log2N` 17 = 128 MiB; see DEFAULTS.passwordLog2N for the measured time. */
export async function hashPassword(password: string, log2N: number): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptAsync(password, salt, log2N, R, P);
  return `scrypt$${log2N}$${R}$${P}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

/** The fields of a stored hash, or undefined when it is malformed. */
function parse(stored: string): { log2N: number; r: number; p: number; salt: Buffer; hash: Buffer } | undefined {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined;
  const [log2N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  // A stored cost outside these bounds is not ours: refuse it rather than let it allocate gigabytes.
  if (!Number.isInteger(log2N) || log2N < 1 || log2N > 20 || !Number.isInteger(r) || r < 1 || r > 32 || p !== 1) return undefined;
  return { log2N, r, p, salt: Buffer.from(parts[4]!, 'base64url'), hash: Buffer.from(parts[5]!, 'base64url') };
}

/** Checks a password against a stored hash, in constant time. A malformed hash never matches. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const h = parse(stored);
  if (!h) return false;
  const key = await scryptAsync(password, h.salt, h.log2N, h.r, h.p);
  return key.length === h.hash.length && timingSafeEqual(key, h.hash);
}

/** True when a stored hash costs less than `log2N` (or is not in our format): a successful login stores a new one. */
export function needsRehash(stored: string, log2N: number): boolean {
  const h = parse(stored);
  return !h || h.log2N < log2N || h.r !== R;
}
