// The adaptive heartbeat's decisions (src/sdk/heartbeat.ts), alone: examples of the mobile profile and properties
// over random histories of agreed periods, survived periods and silent deaths.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HeartbeatTuner, MOBILE_HEARTBEAT, WEB_HEARTBEAT, heartbeatPolicyProblem, type HeartbeatPolicy } from '../../src/sdk/index.ts';

const FUZZ_RUNS = Number(process.env.FUZZ_RUNS ?? 200);

/** Survives `n` whole idle periods at the current period. */
function surviveFor(t: HeartbeatTuner, n: number): number {
  for (let i = 0; i < n; i++) t.survived(t.currentMs);
  return t.currentMs;
}

describe('HeartbeatTuner', () => {
  it('keeps the web profile at 27 s whatever happens', () => {
    const t = new HeartbeatTuner(WEB_HEARTBEAT);
    assert.equal(t.proposalMs, 27_000);
    assert.equal(t.agreed(27_000), 27_000);
    assert.equal(surviveFor(t, 50), 27_000);
  });

  it('grows the mobile profile a minute per 3 survived periods, up to 5 minutes', () => {
    const t = new HeartbeatTuner(MOBILE_HEARTBEAT);
    assert.equal(t.proposalMs, 300_000, 'AUTH proposes the longest period it would use');
    assert.equal(t.agreed(300_000), 60_000, 'starts at the safe value');
    assert.equal(surviveFor(t, 2), 60_000);
    assert.equal(surviveFor(t, 1), 120_000);
    assert.equal(surviveFor(t, 3), 180_000);
    assert.equal(surviveFor(t, 6), 300_000);
    assert.equal(surviveFor(t, 30), 300_000);
  });

  it('does not count a gap shorter than the period (traffic came between heartbeats)', () => {
    const t = new HeartbeatTuner(MOBILE_HEARTBEAT);
    t.agreed(300_000);
    for (let i = 0; i < 10; i++) t.survived(10_000);
    assert.equal(t.currentMs, 60_000);
  });

  it('steps back below a period a link died at silently and never grows to it again', () => {
    const t = new HeartbeatTuner(MOBILE_HEARTBEAT);
    t.agreed(300_000);
    surviveFor(t, 9);
    assert.equal(t.currentMs, 240_000);
    // A NAT that drops mappings idle for more than 3.5 minutes.
    assert.equal(t.diedSilently(240_000), 180_000);
    assert.equal(t.failedMs, 240_000);
    assert.equal(t.agreed(300_000), 180_000, 'the next connection keeps the lower period');
    assert.equal(surviveFor(t, 100), 180_000, 'remembered: no retry at 4 minutes');
  });

  it('stays within what the server agreed: lower when it agreed less, its minimum when that is higher', () => {
    const t = new HeartbeatTuner(MOBILE_HEARTBEAT);
    assert.equal(t.agreed(45_000), 45_000);
    assert.equal(surviveFor(t, 20), 45_000);
    const test = new HeartbeatTuner(WEB_HEARTBEAT);
    assert.equal(test.agreed(1_000), 1_000, 'a server pinned to 1 s (tests) gets 1 s');
  });

  it('refuses an unsound policy', () => {
    assert.throws(() => new HeartbeatTuner({ ...MOBILE_HEARTBEAT, initialMs: 400_000 }), RangeError);
    assert.match(heartbeatPolicyProblem({ ...MOBILE_HEARTBEAT, stepMs: 0 }) ?? '', /positive integers/);
    assert.match(heartbeatPolicyProblem({ ...MOBILE_HEARTBEAT, growAfter: 0 }) ?? '', /growAfter/);
    assert.equal(heartbeatPolicyProblem(MOBILE_HEARTBEAT), undefined);
  });

  const policy = fc
    .record({ minMs: fc.integer({ min: 1_000, max: 60_000 }), span: fc.integer({ min: 0, max: 600_000 }), at: fc.double({ min: 0, max: 1, noNaN: true }), stepMs: fc.integer({ min: 1, max: 120_000 }), growAfter: fc.integer({ min: 1, max: 5 }) })
    .map(({ minMs, span, at, stepMs, growAfter }): HeartbeatPolicy => ({ minMs, maxMs: minMs + span, initialMs: minMs + Math.floor(at * span), stepMs, growAfter }));
  const event = fc.oneof(
    fc.record({ kind: fc.constant('agreed' as const), ms: fc.integer({ min: 1_000, max: 700_000 }) }),
    fc.record({ kind: fc.constant('survived' as const), share: fc.double({ min: 0, max: 1.5, noNaN: true }) }),
    fc.record({ kind: fc.constant('died' as const) }),
  );

  it('property: the period stays within [policy min, agreed] (or the agreed one below the minimum), never at or above a period that died', () => {
    fc.assert(
      fc.property(policy, fc.array(event, { maxLength: 80 }), (p, events) => {
        const t = new HeartbeatTuner(p);
        let agreedMs = p.maxMs;
        for (const e of events) {
          const before = t.currentMs;
          if (e.kind === 'agreed') {
            agreedMs = e.ms;
            t.agreed(e.ms);
          } else if (e.kind === 'survived') {
            t.survived(Math.round(e.share * t.currentMs));
            assert.ok(t.currentMs >= before, 'surviving never shrinks the period');
          } else {
            t.diedSilently(before);
            assert.ok(t.currentMs < before || t.currentMs === p.minMs || before <= p.minMs, 'a death steps back unless at the minimum');
          }
          assert.ok(t.currentMs <= p.maxMs, 'never above the policy maximum');
          assert.ok(t.currentMs <= agreedMs, 'never above the agreed period');
          if (e.kind === 'survived' && t.currentMs > before) assert.ok(t.currentMs < t.failedMs, 'growth stops below a failed period');
        }
      }),
      { numRuns: FUZZ_RUNS },
    );
  });
});
