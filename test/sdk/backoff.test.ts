import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { backoffDelay } from '../../src/sdk/index.ts';

describe('backoffDelay', () => {
  it('stays within [d/2, d] where d doubles from baseMs and stops at maxMs', () => {
    fc.assert(
      fc.property(fc.nat(60), fc.double({ min: 0, max: 0.999999, noNaN: true }), (attempt, r) => {
        const d = Math.min(30_000, 500 * 2 ** attempt);
        const delay = backoffDelay(attempt, { baseMs: 500, maxMs: 30_000 }, () => r);
        assert.ok(delay >= d / 2 - 1 && delay <= d + 1, `${delay} for attempt ${attempt}`);
      }),
    );
  });

  it('spreads clients that retry at the same attempt', () => {
    const delays = new Set(Array.from({ length: 100 }, () => backoffDelay(4)));
    assert.ok(delays.size > 50, 'jitter gives different delays');
  });
});
