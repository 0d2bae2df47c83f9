/**
 * The 16-byte-header packet codec of the long connection (PROTOCOL.md "Binary long connection"):
 * `u32 packetLength · u16 headerLength (16) · u16 version (1) · u32 op · u32 seq`, big-endian, then a UTF-8
 * JSON body. Shared by server, SDK and browser: standard library only.
 */

/** Header length in bytes; any other value is a framing error. */
export const HEADER_BYTES = 16;
/** The only protocol version. */
export const PROTOCOL_VERSION = 1;
/** Default upper bound of packetLength, header included. */
export const DEFAULT_MAX_PACKET_BYTES = 1024 * 1024;

/** One decoded packet. `body` is a view into the decoder's buffer: copy it to keep it past the next push. */
export interface Packet {
  op: number;
  seq: number;
  body: Uint8Array;
}

/** Stable codes of framing errors. */
export type FrameErrorCode = 'BAD_HEADER_LENGTH' | 'BAD_VERSION' | 'PACKET_TOO_SHORT' | 'PACKET_TOO_LARGE';

/** A framing error: the connection answers ERROR and closes. */
export interface FrameError {
  code: FrameErrorCode;
  message: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Writes a header into `out` at `offset`. */
export function writeHeader(out: Uint8Array, offset: number, packetLength: number, op: number, seq: number): void {
  const view = new DataView(out.buffer, out.byteOffset + offset, HEADER_BYTES);
  view.setUint32(0, packetLength);
  view.setUint16(4, HEADER_BYTES);
  view.setUint16(6, PROTOCOL_VERSION);
  view.setUint32(8, op >>> 0);
  view.setUint32(12, seq >>> 0);
}

/** Encodes one packet; `body` may be a string (UTF-8 encoded), bytes, or an object (JSON). */
export function encodePacket(op: number, seq: number, body?: string | Uint8Array | object): Uint8Array {
  let bytes: Uint8Array;
  if (body === undefined) bytes = new Uint8Array(0);
  else if (typeof body === 'string') bytes = encoder.encode(body);
  else if (body instanceof Uint8Array) bytes = body;
  else bytes = encoder.encode(JSON.stringify(body));
  const out = new Uint8Array(HEADER_BYTES + bytes.length);
  writeHeader(out, 0, out.length, op, seq);
  out.set(bytes, HEADER_BYTES);
  return out;
}

/** Decodes a UTF-8 JSON body; undefined for an empty body; throws SyntaxError/TypeError on bad JSON or UTF-8. */
export function parseBody(body: Uint8Array): unknown {
  if (body.length === 0) return undefined;
  return JSON.parse(decoder.decode(body));
}

/**
 * Streaming decoder: feed it whatever arrives (several packets in one chunk, one packet over many chunks) and it
 * returns every complete packet in order. After a framing error it stays failed and returns the same error.
 * Never throws.
 */
export class FrameDecoder {
  readonly maxPacketBytes: number;
  #buf: Uint8Array = new Uint8Array(0);
  #start = 0;
  #end = 0;
  #error: FrameError | undefined;

  constructor(maxPacketBytes: number = DEFAULT_MAX_PACKET_BYTES) {
    this.maxPacketBytes = maxPacketBytes;
  }

  /** The framing error, once one happened. */
  get error(): FrameError | undefined {
    return this.#error;
  }

  /** Bytes buffered and not yet part of a complete packet. */
  get pendingBytes(): number {
    return this.#end - this.#start;
  }

  /** Feeds bytes; returns the complete packets and, if the stream is broken, the error (packets before it are kept). */
  push(chunk: Uint8Array): { packets: Packet[]; error?: FrameError } {
    const packets: Packet[] = [];
    if (this.#error) return { packets, error: this.#error };
    let data: Uint8Array;
    let pos: number;
    let end: number;
    if (this.#end === this.#start) {
      // Common case: nothing buffered; decode straight from the chunk without copying.
      data = chunk;
      pos = 0;
      end = chunk.length;
    } else {
      this.#append(chunk);
      data = this.#buf;
      pos = this.#start;
      end = this.#end;
    }
    while (end - pos >= HEADER_BYTES) {
      const view = new DataView(data.buffer, data.byteOffset + pos, HEADER_BYTES);
      const packetLength = view.getUint32(0);
      const headerLength = view.getUint16(4);
      const version = view.getUint16(6);
      // PROTOCOL.md "Binary": header length ≠ 16, version ≠ 1, length < 16 or > limit are framing errors.
      if (headerLength !== HEADER_BYTES) return this.#fail(packets, 'BAD_HEADER_LENGTH', `header length ${headerLength}, expected 16`);
      if (version !== PROTOCOL_VERSION) return this.#fail(packets, 'BAD_VERSION', `version ${version}, expected 1`);
      if (packetLength < HEADER_BYTES) return this.#fail(packets, 'PACKET_TOO_SHORT', `packet length ${packetLength} < 16`);
      if (packetLength > this.maxPacketBytes) {
        return this.#fail(packets, 'PACKET_TOO_LARGE', `packet length ${packetLength} > ${this.maxPacketBytes}`);
      }
      if (end - pos < packetLength) break;
      packets.push({
        op: view.getUint32(8),
        seq: view.getUint32(12),
        body: data.subarray(pos + HEADER_BYTES, pos + packetLength),
      });
      pos += packetLength;
    }
    if (data === chunk) {
      if (pos < end) {
        // Keep the tail; copy because the caller may reuse its chunk (a Node Buffer's own slice() is a view).
        this.#buf = Uint8Array.prototype.slice.call(chunk, pos, end);
        this.#start = 0;
        this.#end = this.#buf.length;
      }
    } else {
      this.#start = pos;
      if (this.#start === this.#end) {
        this.#start = this.#end = 0;
        if (this.#buf.length > 64 * 1024) this.#buf = new Uint8Array(0);
      }
    }
    return { packets };
  }

  #append(chunk: Uint8Array): void {
    const used = this.#end - this.#start;
    if (this.#end + chunk.length > this.#buf.length) {
      const size = Math.max(used + chunk.length, Math.min(this.#buf.length * 2, this.maxPacketBytes + HEADER_BYTES));
      const next = new Uint8Array(Math.max(size, used + chunk.length));
      next.set(this.#buf.subarray(this.#start, this.#end), 0);
      this.#buf = next;
      this.#start = 0;
      this.#end = used;
    }
    this.#buf.set(chunk, this.#end);
    this.#end += chunk.length;
  }

  #fail(packets: Packet[], code: FrameErrorCode, message: string): { packets: Packet[]; error: FrameError } {
    this.#error = { code, message };
    this.#buf = new Uint8Array(0);
    this.#start = this.#end = 0;
    return { packets, error: this.#error };
  }
}
