/**
 * The HTTP API table (PROTOCOL.md "HTTP"): every call's path, method, whether it needs a session, and the
 * JSON schema of its request. The same table drives the HTTP routes and the long connection's CALL op, so a
 * call validates identically on every transport. Plain JSON Schema objects: no runtime dependency.
 */
import { MSG_TYPE } from './entries.ts';

/** JSON Schema (draft-07 subset) as plain data. */
export type JsonSchema = Readonly<Record<string, unknown>>;

/** Limits that appear in schemas and rules. */
export const LIMITS = {
  /** Text content, in UTF-8 bytes. */
  maxContentBytes: 16 * 1024,
  maxClientMsgIdChars: 64,
  maxDeviceIdChars: 64,
  maxDisplayNameChars: 64,
  minPasswordChars: 8,
  maxPasswordChars: 256,
  maxGroupMembers: 500,
  maxGroupNameChars: 64,
  maxNoteChars: 256,
  /** Default and maximum `limit` of one sync page. */
  defaultSyncLimit: 200,
  maxSyncLimit: 1000,
  /** Default and maximum synccheck hold, in ms. */
  defaultSynccheckTimeoutMs: 25_000,
  maxSynccheckTimeoutMs: 60_000,
  /** Recall window, in ms. */
  recallWindowMs: 120_000,
  /** Default and maximum `/api/qrlogin/poll` hold, in ms (the server answers before a proxy's usual 60 s cut). */
  defaultQrPollTimeoutMs: 25_000,
  maxQrPollTimeoutMs: 30_000,
  /** Most conversations one `/api/chats` answer lists (its default too). */
  maxChats: 200,
  /** `/api/chats` looks for conversations in this many of the caller's latest log entries, at most. */
  chatsScanEntries: 5000,
} as const;

const USERNAME = { type: 'string', minLength: 3, maxLength: 32, pattern: '^[A-Za-z0-9_]{3,32}$' } as const;
const PEER = { type: 'string', minLength: 3, maxLength: 32, pattern: '^([A-Za-z0-9_]{3,32}|@@[1-9][0-9]{0,15})$' } as const;
const GROUP_ID = { type: 'string', pattern: '^@@[1-9][0-9]{0,15}$' } as const;
const MSG_ID = { type: 'string', pattern: '^[1-9][0-9]{0,15}$' } as const;
const SYNC_KEY = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const;
const DISPLAY_NAME = { type: 'string', minLength: 1, maxLength: LIMITS.maxDisplayNameChars } as const;
const PRINTABLE = '^[\\x21-\\x7E][\\x20-\\x7E]*$';
/**
 * A QR login's uuid: 128 random bits as 32 lowercase hex digits, which every alphabet a QR login may travel in
 * accepts (a URL fragment, WeChat-web clients' `[A-Za-z0-9_@]` tokens: ../shared/webwx-protocol.md §1).
 */
export const QR_UUID_PATTERN = '^[0-9a-f]{32}$';
const QR_UUID = { type: 'string', pattern: QR_UUID_PATTERN } as const;
/** Upload and media ids: URL-safe, opaque. */
const MEDIA_ID = { type: 'string', pattern: '^[A-Za-z0-9_-]{8,64}$' } as const;

function obj(properties: Record<string, unknown>, required: string[] = []): JsonSchema {
  return { type: 'object', additionalProperties: false, properties, required };
}

/** One API call. */
export interface CallSpec {
  readonly method: 'GET' | 'POST';
  /** Needs `Authorization: Bearer <sid>`. */
  readonly auth: boolean;
  /** Schema of the JSON body (POST) or of the query (GET). */
  readonly schema: JsonSchema;
}

/** Every API call by path. */
export const CALLS = {
  '/api/register': {
    method: 'POST',
    auth: false,
    schema: obj(
      {
        username: USERNAME,
        password: { type: 'string', minLength: LIMITS.minPasswordChars, maxLength: LIMITS.maxPasswordChars },
        displayName: DISPLAY_NAME,
      },
      ['username', 'password', 'displayName'],
    ),
  },
  '/api/login': {
    method: 'POST',
    auth: false,
    schema: obj(
      {
        username: { type: 'string', minLength: 1, maxLength: 64 },
        password: { type: 'string', minLength: 1, maxLength: LIMITS.maxPasswordChars },
        deviceId: { type: 'string', minLength: 1, maxLength: LIMITS.maxDeviceIdChars, pattern: PRINTABLE },
        deviceName: { type: 'string', maxLength: 64 },
      },
      ['username', 'password', 'deviceId'],
    ),
  },
  // `everywhere`: every session of the user ends, this one included (PROTOCOL.md "HTTP").
  '/api/logout': { method: 'POST', auth: true, schema: obj({ everywhere: { type: 'boolean' } }) },
  '/api/password': {
    method: 'POST',
    auth: true,
    schema: obj(
      {
        oldPassword: { type: 'string', minLength: 1, maxLength: LIMITS.maxPasswordChars },
        newPassword: { type: 'string', minLength: LIMITS.minPasswordChars, maxLength: LIMITS.maxPasswordChars },
      },
      ['oldPassword', 'newPassword'],
    ),
  },
  '/api/synccheck': {
    method: 'GET',
    auth: true,
    schema: obj({ syncKey: SYNC_KEY, timeout: { type: 'integer', minimum: 0 }, _: {} }, ['syncKey']),
  },
  '/api/sync': {
    method: 'POST',
    auth: true,
    schema: obj({ syncKey: SYNC_KEY, limit: { type: 'integer', minimum: 1 } }, ['syncKey']),
  },
  '/api/sendmsg': {
    method: 'POST',
    auth: true,
    schema: obj(
      {
        clientMsgId: { type: 'string', minLength: 1, maxLength: LIMITS.maxClientMsgIdChars, pattern: PRINTABLE },
        to: PEER,
        type: { type: 'integer', enum: Object.values(MSG_TYPE) },
        content: { type: 'string', maxLength: LIMITS.maxContentBytes },
        mediaId: { type: 'string', minLength: 1, maxLength: 128 },
      },
      ['clientMsgId', 'to', 'type', 'content'],
    ),
  },
  '/api/read': { method: 'POST', auth: true, schema: obj({ peer: PEER, msgId: MSG_ID }, ['peer', 'msgId']) },
  '/api/revoke': { method: 'POST', auth: true, schema: obj({ msgId: MSG_ID }, ['msgId']) },
  '/api/contacts/request': {
    method: 'POST',
    auth: true,
    schema: obj({ username: USERNAME, note: { type: 'string', maxLength: LIMITS.maxNoteChars } }, ['username']),
  },
  '/api/contacts/accept': { method: 'POST', auth: true, schema: obj({ username: USERNAME }, ['username']) },
  '/api/contacts/decline': { method: 'POST', auth: true, schema: obj({ username: USERNAME }, ['username']) },
  '/api/contacts/remove': { method: 'POST', auth: true, schema: obj({ username: USERNAME }, ['username']) },
  '/api/contacts/list': { method: 'POST', auth: true, schema: obj({}) },
  // Blocking (PROTOCOL.md "HTTP", docs/protocol.md "Blocking"): nothing the blocked user does reaches the caller's log.
  '/api/contacts/block': { method: 'POST', auth: true, schema: obj({ username: USERNAME }, ['username']) },
  '/api/contacts/unblock': { method: 'POST', auth: true, schema: obj({ username: USERNAME }, ['username']) },
  '/api/users/lookup': { method: 'POST', auth: true, schema: obj({ username: USERNAME }, ['username']) },
  '/api/profile': { method: 'POST', auth: true, schema: obj({ displayName: DISPLAY_NAME }, ['displayName']) },
  '/api/groups/create': {
    method: 'POST',
    auth: true,
    schema: obj(
      {
        name: { type: 'string', minLength: 1, maxLength: LIMITS.maxGroupNameChars },
        members: { type: 'array', items: USERNAME, maxItems: LIMITS.maxGroupMembers, uniqueItems: true },
      },
      ['name', 'members'],
    ),
  },
  '/api/groups/members': {
    method: 'POST',
    auth: true,
    schema: obj(
      {
        groupId: GROUP_ID,
        add: { type: 'array', items: USERNAME, maxItems: LIMITS.maxGroupMembers, uniqueItems: true },
        remove: { type: 'array', items: USERNAME, maxItems: LIMITS.maxGroupMembers, uniqueItems: true },
      },
      ['groupId'],
    ),
  },
  '/api/groups/rename': {
    method: 'POST',
    auth: true,
    schema: obj({ groupId: GROUP_ID, name: { type: 'string', minLength: 1, maxLength: LIMITS.maxGroupNameChars } }, [
      'groupId',
      'name',
    ]),
  },
  // Reads the WeChat-web gateway needs (docs/webwx.md), useful to any client: a group with its members' names, the
  // recent conversations, the media of a message, and a generated avatar.
  '/api/groups/info': { method: 'POST', auth: true, schema: obj({ groupId: GROUP_ID }, ['groupId']) },
  '/api/chats': {
    method: 'POST',
    auth: true,
    schema: obj({ peer: PEER, limit: { type: 'integer', minimum: 1, maximum: LIMITS.maxChats } }),
  },
  '/api/media/message': { method: 'POST', auth: true, schema: obj({ msgId: MSG_ID }, ['msgId']) },
  '/api/avatar': { method: 'POST', auth: true, schema: obj({ peer: PEER }, ['peer']) },
  '/api/sessions': { method: 'POST', auth: true, schema: obj({}) },
  '/api/sessions/revoke': {
    method: 'POST',
    auth: true,
    schema: obj({ sessionId: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } }, ['sessionId']),
  },
  '/api/gateways': { method: 'GET', auth: false, schema: obj({}) },
  // QR login (docs/protocol.md "QR login"): a device not logged in asks (`new`) and waits (`poll`); a logged-in
  // device scans (sees who asks) and confirms. `state` on poll: the state the device last saw; the poll is held
  // while it still holds (default `waiting`).
  '/api/qrlogin/new': {
    method: 'POST',
    auth: false,
    schema: obj(
      {
        deviceId: { type: 'string', minLength: 1, maxLength: LIMITS.maxDeviceIdChars, pattern: PRINTABLE },
        deviceName: { type: 'string', maxLength: 64 },
      },
      ['deviceId'],
    ),
  },
  '/api/qrlogin/poll': {
    method: 'GET',
    auth: false,
    schema: obj({ uuid: QR_UUID, timeout: { type: 'integer', minimum: 0 }, state: { enum: ['waiting', 'scanned'] }, _: {} }, ['uuid']),
  },
  '/api/qrlogin/scan': { method: 'POST', auth: true, schema: obj({ uuid: QR_UUID }, ['uuid']) },
  '/api/qrlogin/confirm': { method: 'POST', auth: true, schema: obj({ uuid: QR_UUID }, ['uuid']) },
  // Media (docs/protocol.md "Media"). Chunk bytes arrive as `PUT /api/media/<uploadId>/<index>`; complete also
  // answers at `POST /api/media/<uploadId>/complete`; reads are `GET /api/media/<mediaId>` and `/thumb`.
  '/api/media/init': {
    method: 'POST',
    auth: true,
    schema: {
      ...obj(
        {
          size: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
          sha256: { type: 'string', pattern: '^[0-9A-Fa-f]{64}$' },
          mime: { type: 'string', minLength: 1, maxLength: 127, pattern: '^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9!#$&^_.+*-]+$' },
          chunkSize: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
          name: { type: 'string', maxLength: 1024 },
          // Instead of sha256, for a client that learns the hash only at the end (docs/protocol.md "Media"): the
          // upload's id, chosen by the client (unguessable), so that a repeat of init resumes it.
          uploadId: MEDIA_ID,
        },
        ['size', 'mime', 'chunkSize'],
      ),
      oneOf: [{ properties: { sha256: true }, required: ['sha256'] }, { properties: { uploadId: true }, required: ['uploadId'] }],
    },
  },
  '/api/media/chunk': {
    method: 'POST',
    auth: true,
    // `bytes` is a Uint8Array handed over by a transport (the PUT route, the long connection); JSON cannot carry it.
    schema: obj({ uploadId: MEDIA_ID, index: { type: 'integer', minimum: 0, maximum: 1_000_000 }, bytes: {} }, ['uploadId', 'index', 'bytes']),
  },
  '/api/media/complete': { method: 'POST', auth: true, schema: obj({ uploadId: MEDIA_ID }, ['uploadId']) },
  '/api/media/info': { method: 'POST', auth: true, schema: obj({ mediaId: MEDIA_ID }, ['mediaId']) },
} as const satisfies Record<string, CallSpec>;

/** A path of the API table. */
export type CallPath = keyof typeof CALLS;

/** True when `path` names an API call. */
export function isCallPath(path: string): path is CallPath {
  return Object.prototype.hasOwnProperty.call(CALLS, path);
}
