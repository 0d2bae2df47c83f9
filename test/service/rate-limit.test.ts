// The in-memory throttles (src/service/rate-limit.ts) and the pure delay rule they share with Redis
// (src/core/backoff.ts): growing waits, forgetting, and the bound on keys.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelayMs, retryAfterSecOf } from '../../src/core/backoff.ts';
import { BackoffCounter, WindowCounter } from '../../src/service/rate-limit.ts';

const POLICY = { freeFailures: 3, baseDelayMs: 1000, maxDelayMs: 8000, forgetMs: 60_000 };

describe('backoffDelayMs', () => {
  it('is free up to freeFailures, then doubles from baseDelayMs up to maxDelayMs', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8, 100, 1e6].map((n) => backoffDelayMs(n, POLICY)), [0, 0, 0, 1000, 2000, 4000, 8000, 8000, 8000, 8000]);
  });

  it('announces any wait left as whole seconds, at least 1', () => {
    assert.deepEqual([0, -5, 1, 999, 1000, 1001].map(retryAfterSecOf), [0, 0, 1, 1, 1, 2]);
  });
});

describe('BackoffCounter', () => {
  it('makes a key wait ever longer, only that key, and lets the wait run out', () => {
    const b = new BackoffCounter(POLICY);
    assert.deepEqual([0, 0, 0, 0].map(() => b.fail('a', 0)), [0, 0, 0, 1]);
    assert.equal(b.retryAfterSec('a', 500), 1);
    assert.equal(b.retryAfterSec('a', 1000), 0);
    assert.equal(b.retryAfterSec('b', 0), 0);
    assert.equal(b.fail('a', 1000), 2);
    assert.equal(b.fail('a', 3000), 4);
    b.clear('a');
    assert.equal(b.fail('a', 3000), 0);
  });

  it('starts over once a key has been quiet for forgetMs', () => {
    const b = new BackoffCounter(POLICY);
    for (let i = 0; i < 5; i++) b.fail('a', 0);
    assert.equal(b.fail('a', 59_999), 4, 'still counted just before forgetMs');
    assert.equal(b.fail('a', 59_999 + 60_000), 0);
  });

  it('holds at most maxKeys keys, forgetting the oldest', () => {
    const b = new BackoffCounter(POLICY, 3);
    for (let i = 0; i < 10; i++) b.fail(`ip-${i}`, 0);
    assert.equal(b.size, 3);
    for (let i = 0; i < 3; i++) b.fail('ip-9', 0);
    assert.equal(b.retryAfterSec('ip-9', 0), 1, 'the newest key is kept');
  });
});

describe('WindowCounter', () => {
  it('holds at most maxKeys keys however many distinct keys hit it', () => {
    const c = new WindowCounter(2, 60_000, 4);
    for (let i = 0; i < 100; i++) c.hit(`user-${i}`, 0);
    assert.equal(c.size, 4);
    assert.equal(c.hit('user-99', 0), 0);
    assert.equal(c.hit('user-99', 0), 60, 'a kept key still counts');
  });
});
