/**
 * Body of the MEDIA_CHUNK op (docs/protocol.md "Binary long connection"): one chunk of a media upload over the
 * long connection, for short voice notes. `u16 headerLength` (big-endian) · UTF-8 JSON header
 * `{uploadId, index}` · the chunk's raw bytes. Acknowledged by MEDIA_CHUNK_ACK `{ret}` like SEND by SEND_ACK.
 * Browser-safe, no dependencies.
 */

/** A decoded MEDIA_CHUNK body; `bytes` is a view into the packet body. */
export interface MediaChunkBody {
  uploadId: string;
  index: number;
  bytes: Uint8Array;
}

/** Largest JSON header of a MEDIA_CHUNK body, in bytes. */
export const MAX_MEDIA_CHUNK_HEADER_BYTES = 1024;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/** Encodes a MEDIA_CHUNK body. */
export function encodeMediaChunk(uploadId: string, index: number, bytes: Uint8Array): Uint8Array {
  const header = utf8Encoder.encode(JSON.stringify({ uploadId, index }));
  if (header.length > MAX_MEDIA_CHUNK_HEADER_BYTES) throw new RangeError('media chunk header too long');
  const out = new Uint8Array(2 + header.length + bytes.length);
  new DataView(out.buffer).setUint16(0, header.length);
  out.set(header, 2);
  out.set(bytes, 2 + header.length);
  return out;
}

/** Decodes a MEDIA_CHUNK body; a string says what is wrong (never throws). Field values are checked by the API schema. */
export function decodeMediaChunk(body: Uint8Array): { uploadId: unknown; index: unknown; bytes: Uint8Array } | string {
  if (body.length < 2) return 'MEDIA_CHUNK body: missing header length';
  const headerLength = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint16(0);
  if (headerLength > MAX_MEDIA_CHUNK_HEADER_BYTES || 2 + headerLength > body.length) return 'MEDIA_CHUNK body: bad header length';
  let header: unknown;
  try {
    header = JSON.parse(utf8Decoder.decode(body.subarray(2, 2 + headerLength)));
  } catch {
    return 'MEDIA_CHUNK body: header is not valid JSON';
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return 'MEDIA_CHUNK body: header must be {uploadId, index}';
  const h = header as Record<string, unknown>;
  return { uploadId: h.uploadId, index: h.index, bytes: body.subarray(2 + headerLength) };
}
