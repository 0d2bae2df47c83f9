// The pure media rules and the HTTP Range parser, alone.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  checkDeclaredType,
  checkUploadInit,
  chunkCount,
  chunkLength,
  contentDisposition,
  detectType,
  mayReadMedia,
  missingChunks,
  safeFileName,
} from '../../src/core/media-rules.ts';
import { parseRange } from '../../src/transports/http/media-routes.ts';

const RUNS = Number(process.env.FUZZ_RUNS ?? 200);

describe('chunk arithmetic', () => {
  it('cuts any size into chunks whose lengths add up to the size', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000_000 }), fc.integer({ min: 1, max: 100_000 }), (size, chunk) => {
        const n = chunkCount(size, chunk);
        let total = 0;
        for (let i = 0; i < n; i++) {
          const len = chunkLength(size, chunk, i);
          assert.ok(len > 0 && len <= chunk);
          total += len;
        }
        assert.equal(total, size);
        assert.equal(chunkLength(size, chunk, n), -1);
        assert.equal(chunkLength(size, chunk, -1), -1);
      }),
      { numRuns: RUNS },
    );
  });

  it('lists the missing indices in order', () => {
    assert.deepEqual(missingChunks(5, [3, 0, 3]), [1, 2, 4]);
    assert.deepEqual(missingChunks(0, []), []);
  });

  it('checks size, chunk size and the daily budget', () => {
    const limits = { maxFileBytes: 1000_000, maxDailyBytes: 1500_000 };
    assert.equal(checkUploadInit({ size: 1000_000, chunkSize: 65536 }, limits, 0), undefined);
    assert.equal(checkUploadInit({ size: 1000_001, chunkSize: 65536 }, limits, 0)?.ret, 5);
    assert.equal(checkUploadInit({ size: 0, chunkSize: 65536 }, limits, 0)?.ret, 1);
    assert.equal(checkUploadInit({ size: 10, chunkSize: 100 }, limits, 0)?.ret, 1);
    assert.equal(checkUploadInit({ size: 600_000, chunkSize: 65536 }, limits, 1000_000)?.ret, 5);
  });
});

describe('type detection', () => {
  const cases: [number[] | string, string, string][] = [
    [[0xff, 0xd8, 0xff, 0xe0], 'image', 'image/jpeg'],
    [[0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'image', 'image/png'],
    ['GIF89a', 'image', 'image/gif'],
    ['RIFF\0\0\0\0WEBPVP8 ', 'image', 'image/webp'],
    ['\0\0\0\x1cftypavif', 'image', 'image/avif'],
    [[0x1a, 0x45, 0xdf, 0xa3, 0x9f], 'voice', 'audio/webm'],
    ['OggS\0', 'voice', 'audio/ogg'],
    ['\0\0\0\x20ftypM4A ', 'voice', 'audio/mp4'],
    ['RIFF\0\0\0\0WAVEfmt ', 'voice', 'audio/wav'],
    ['ID3\x04', 'voice', 'audio/mpeg'],
    ['%PDF-1.7', 'file', 'application/octet-stream'],
    ['<svg xmlns=', 'file', 'application/octet-stream'],
    ['', 'file', 'application/octet-stream'],
  ];
  for (const [bytes, kind, mime] of cases) {
    it(`reads ${mime} (${kind}) from the magic number of ${JSON.stringify(bytes).slice(0, 24)}`, () => {
      const b = typeof bytes === 'string' ? Uint8Array.from(bytes, (c) => c.charCodeAt(0)) : Uint8Array.from(bytes);
      assert.deepEqual(detectType(b), { kind, mime });
    });
  }

  it('never throws on random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (b) => void detectType(b)), { numRuns: RUNS });
  });

  it('refuses a declared image or audio type that the bytes are not, and lets generic types through', () => {
    const file = { kind: 'file' as const, mime: 'application/octet-stream' };
    assert.equal(checkDeclaredType('image/png', file)?.ret, 1);
    assert.equal(checkDeclaredType('audio/webm', file)?.ret, 1);
    assert.equal(checkDeclaredType('application/pdf', file), undefined);
    assert.equal(checkDeclaredType('application/octet-stream', { kind: 'image', mime: 'image/png' }), undefined);
  });
});

describe('who may read', () => {
  it('allows the uploader, both sides of a direct chat, and current group members only', () => {
    const sends = [{ groupId: 0, uinA: 2, uinB: 3 }, { groupId: 7, uinA: 0, uinB: 0 }];
    const inGroup7 = (g: number) => g === 7;
    assert.ok(mayReadMedia(1, 1, [], () => false));
    assert.ok(mayReadMedia(3, 1, sends, () => false));
    assert.ok(mayReadMedia(9, 1, sends, inGroup7));
    assert.ok(!mayReadMedia(9, 1, sends, () => false));
    assert.ok(!mayReadMedia(4, 1, [], () => true));
  });
});

describe('file names', () => {
  it('keeps no path, control or bidi characters', () => {
    assert.equal(safeFileName('../../etc/passwd'), 'passwd');
    assert.equal(safeFileName('C:\\x\\evil.exe'), 'evil.exe');
    assert.equal(safeFileName('a\u202Egpj.exe'), 'agpj.exe');
    assert.equal(safeFileName('..'), 'file');
    assert.equal(safeFileName(undefined), 'file');
  });

  it('makes a Content-Disposition without CR, LF or unescaped quotes for any name', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (name) => {
        const h = contentDisposition('attachment', name);
        assert.ok(!/[\r\n\0]/.test(h));
        const m = /^attachment; filename="([^"\\]*)"; filename\*=UTF-8''([A-Za-z0-9%!._~-]*)$/.exec(h);
        assert.ok(m, h);
        assert.equal(decodeURIComponent(m[2]!), safeFileName(name));
      }),
      { numRuns: RUNS },
    );
  });
});

describe('Range header', () => {
  it('parses one range within the size, and says when it cannot be satisfied', () => {
    assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 });
    assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=50-500', 100), { start: 50, end: 99 });
    assert.equal(parseRange('bytes=100-', 100), 'unsatisfiable');
    assert.equal(parseRange('bytes=0-1,5-6', 100), 'ignore');
    assert.equal(parseRange('items=0-1', 100), 'ignore');
    assert.equal(parseRange(undefined, 100), 'ignore');
  });

  it('never answers a range outside the object', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), fc.integer({ min: 0, max: 1e9 }), (h, size) => {
        const r = parseRange('bytes=' + h, size);
        if (typeof r === 'object') assert.ok(r.start >= 0 && r.start <= r.end && r.end < size);
      }),
      { numRuns: RUNS },
    );
  });
});
