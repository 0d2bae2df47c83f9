/**
 * Operation codes of the binary long connection (PROTOCOL.md "Binary long connection").
 */
export const OP = {
  HEARTBEAT: 1,
  HEARTBEAT_ACK: 2,
  AUTH: 3,
  AUTH_OK: 4,
  SEND: 5,
  SEND_ACK: 6,
  SYNC: 7,
  SYNC_RESP: 8,
  NOTIFY: 9,
  PUSH: 10,
  ACK: 11,
  CALL: 12,
  CALL_RESP: 13,
  /** A media chunk over the long connection (body: src/protocol/media-chunk.ts) and its answer `{ret}`. */
  MEDIA_CHUNK: 14,
  MEDIA_CHUNK_ACK: 15,
  ERROR: 255,
} as const;

/** An operation code value. */
export type Op = (typeof OP)[keyof typeof OP];

/** op → name, for logs and errors. */
export const OP_NAME: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(OP).map(([name, code]) => [code, name]),
);
