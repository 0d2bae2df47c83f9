/**
 * The one table of Synchat's result codes: code → name → HTTP status → default errMsg.
 * PROTOCOL.md "HTTP" lists them; docs/errors.md mirrors this table and a test keeps the two in lockstep.
 */
export const RET = {
  OK: 0,
  BAD_REQUEST: 1,
  NOT_FOUND: 3,
  FORBIDDEN: 4,
  TOO_LARGE: 5,
  CONFLICT: 6,
  SERVER_ERROR: 9,
  NOT_LOGGED_IN: 1100,
  SESSION_REPLACED: 1101,
  GOING_AWAY: 1102,
  RATE_LIMITED: 1205,
} as const;

/** A result code value. */
export type Ret = (typeof RET)[keyof typeof RET];

/** One row of the code table. */
export interface RetInfo {
  /** The constant's name in {@link RET}. */
  readonly name: keyof typeof RET;
  /** HTTP status the HTTP transport answers with. */
  readonly httpStatus: number;
  /** errMsg used when the thrower gives none. */
  readonly errMsg: string;
}

/** code → {name, httpStatus, errMsg}. */
export const RET_INFO: Readonly<Record<Ret, RetInfo>> = {
  0: { name: 'OK', httpStatus: 200, errMsg: '' },
  1: { name: 'BAD_REQUEST', httpStatus: 400, errMsg: 'bad request' },
  3: { name: 'NOT_FOUND', httpStatus: 404, errMsg: 'not found' },
  4: { name: 'FORBIDDEN', httpStatus: 403, errMsg: 'forbidden' },
  5: { name: 'TOO_LARGE', httpStatus: 413, errMsg: 'too large' },
  6: { name: 'CONFLICT', httpStatus: 409, errMsg: 'conflict' },
  9: { name: 'SERVER_ERROR', httpStatus: 500, errMsg: 'server error' },
  1100: { name: 'NOT_LOGGED_IN', httpStatus: 401, errMsg: 'not logged in or session ended' },
  1101: { name: 'SESSION_REPLACED', httpStatus: 401, errMsg: 'session replaced or revoked' },
  1102: { name: 'GOING_AWAY', httpStatus: 503, errMsg: 'this server is going away: reconnect, to another gateway if there is one' },
  1205: { name: 'RATE_LIMITED', httpStatus: 429, errMsg: 'rate limited' },
};

/**
 * errMsg of ret 9 for a write refused because the server's disk is full (SQLite's SQLITE_FULL, PostgreSQL's 53100,
 * ENOSPC on a media file). Nothing was written and nothing committed is harmed; reads keep working, and the same
 * write succeeds once space is freed, without a restart (docs/architecture.md "A full disk").
 */
export const DISK_FULL_ERRMSG = 'the server’s disk is full: writes are refused until space is freed (reads still work)';

/** HTTP status for a code; unknown codes map to 500. */
export function httpStatusOf(ret: number): number {
  return (RET_INFO as Record<number, RetInfo | undefined>)[ret]?.httpStatus ?? 500;
}

/**
 * The one error class every layer throws for an expected failure that must reach the client.
 * Transports turn it into `{ret, errMsg, ...data}`; anything else becomes ret 9 and is logged, never echoed.
 */
export class SynchatError extends Error {
  readonly ret: Ret;
  readonly errMsg: string;
  /** Extra fields merged into the answer body (e.g. `retryAfterSec` for 1205). */
  readonly data: Readonly<Record<string, unknown>> | undefined;

  constructor(ret: Ret, errMsg?: string, data?: Record<string, unknown>) {
    const msg = errMsg ?? RET_INFO[ret]?.errMsg ?? 'error';
    super(msg);
    this.name = 'SynchatError';
    this.ret = ret;
    this.errMsg = msg;
    this.data = data;
  }
}
