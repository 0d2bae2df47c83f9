// Property tests of the long connection's streaming decoder (src/protocol/frame.ts). FUZZ_RUNS sets numRuns.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FrameDecoder, HEADER_BYTES, encodePacket, type FrameErrorCode } from '../../src/protocol/index.ts';

const numRuns = Number(process.env.FUZZ_RUNS ?? 300);

const packetArb = fc.record({
  op: fc.integer({ min: 0, max: 0xffffffff }),
  seq: fc.integer({ min: 0, max: 0xffffffff }),
  body: fc.uint8Array({ maxLength: 300 }),
});

/** Cut points splitting `length` bytes into chunks (possibly empty ones). */
function splitsArb(length: number) {
  return fc.array(fc.integer({ min: 0, max: length }), { maxLength: 20 }).map((cuts) => [0, ...cuts.sort((a, b) => a - b), length]);
}

function decodeAll(decoder: FrameDecoder, chunks: Uint8Array[]) {
  const out: { op: number; seq: number; body: number[] }[] = [];
  let error;
  for (const chunk of chunks) {
    // The caller may reuse its chunk after push (a Node Buffer, whose slice() is a view): hand in a copy that is
    // then scribbled over.
    const copy = Buffer.from(chunk);
    const r = decoder.push(copy);
    for (const p of r.packets) out.push({ op: p.op, seq: p.seq, body: [...p.body] });
    copy.fill(0xee);
    if (r.error) {
      error = r.error;
      break;
    }
  }
  return { out, error };
}

function header(len: number, headerLen: number, version: number): Uint8Array {
  const b = new Uint8Array(HEADER_BYTES);
  const v = new DataView(b.buffer);
  v.setUint32(0, len);
  v.setUint16(4, headerLen);
  v.setUint16(6, version);
  return b;
}

describe('FrameDecoder', () => {
  it('decodes any split of a valid stream into the same packets', () => {
    fc.assert(
      fc.property(
        fc.array(packetArb, { maxLength: 12 }).chain((packets) => {
          const stream = Buffer.concat(packets.map((p) => encodePacket(p.op, p.seq, p.body)));
          return fc.tuple(fc.constant(packets), fc.constant(stream), splitsArb(stream.length));
        }),
        ([packets, stream, cuts]) => {
          const chunks = [];
          for (let i = 1; i < cuts.length; i++) chunks.push(stream.subarray(cuts[i - 1], cuts[i]));
          const { out, error } = decodeAll(new FrameDecoder(), chunks);
          assert.equal(error, undefined);
          assert.deepEqual(out, packets.map((p) => ({ op: p.op, seq: p.seq, body: [...p.body] })));
        },
      ),
      { numRuns },
    );
  });

  it('never throws on random bytes, however split; an error is sticky', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }), (chunks) => {
        const d = new FrameDecoder(4096);
        let first;
        for (const c of chunks) {
          const r = d.push(c);
          if (first) assert.deepEqual(r, { packets: [], error: first });
          else if (r.error) first = r.error;
          for (const p of r.packets) assert.ok(p.body.length <= 4096 - HEADER_BYTES);
        }
        assert.equal(d.error, first);
      }),
      { numRuns },
    );
  });

  it('reports a bad header length, bad version, too short and oversize packets by code, after the good packets before them', () => {
    const bad: fc.Arbitrary<[FrameErrorCode, Uint8Array]> = fc.oneof(
      fc.integer({ min: 0, max: 0xffff }).filter((h) => h !== 16).map((h) => ['BAD_HEADER_LENGTH', header(64, h, 1)] as [FrameErrorCode, Uint8Array]),
      fc.integer({ min: 0, max: 0xffff }).filter((v) => v !== 1).map((v) => ['BAD_VERSION', header(64, 16, v)] as [FrameErrorCode, Uint8Array]),
      fc.integer({ min: 0, max: 15 }).map((len) => ['PACKET_TOO_SHORT', header(len, 16, 1)] as [FrameErrorCode, Uint8Array]),
      fc.integer({ min: 1025, max: 0xffffffff }).map((len) => ['PACKET_TOO_LARGE', header(len, 16, 1)] as [FrameErrorCode, Uint8Array]),
    );
    fc.assert(
      fc.property(fc.array(packetArb.filter((p) => p.body.length < 1000), { maxLength: 3 }), bad, fc.integer({ min: 1, max: 16 }), (good, [code, head], cut) => {
        const stream = Buffer.concat([...good.map((p) => encodePacket(p.op, p.seq, p.body)), head, Buffer.alloc(32)]);
        const at = Math.max(0, stream.length - 48 - cut);
        const { out, error } = decodeAll(new FrameDecoder(1024), [stream.subarray(0, at), stream.subarray(at)]);
        assert.equal(error?.code, code);
        assert.equal(typeof error?.message, 'string');
        assert.equal(out.length, good.length);
      }),
      { numRuns },
    );
  });

  it('accepts a packet of exactly the limit and refuses one byte more', () => {
    const ok = encodePacket(5, 1, new Uint8Array(1024 - HEADER_BYTES));
    assert.equal(new FrameDecoder(1024).push(ok).packets.length, 1);
    const tooBig = encodePacket(5, 1, new Uint8Array(1025 - HEADER_BYTES));
    assert.equal(new FrameDecoder(1024).push(tooBig).error?.code, 'PACKET_TOO_LARGE');
  });

  it('waits for the rest of a packet without holding more than it needs', () => {
    const d = new FrameDecoder();
    const p = encodePacket(9, 3, new Uint8Array(5000).fill(7));
    assert.deepEqual(d.push(p.subarray(0, 10)).packets, []);
    assert.equal(d.pendingBytes, 10);
    assert.deepEqual(d.push(p.subarray(10, 4000)).packets, []);
    const r = d.push(p.subarray(4000));
    assert.equal(r.packets.length, 1);
    assert.equal(r.packets[0]!.body.length, 5000);
    assert.equal(d.pendingBytes, 0);
  });
});
