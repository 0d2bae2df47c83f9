/**
 * Test helper: the verdict every chaos-runner test asks of a run (bench/chaos/run.ts): its faults struck, traffic
 * flowed, every send ended answered, nothing lost, doubled, refused or diverged, logs dense.
 */
import assert from 'node:assert/strict';
import type { ChaosResult } from '../../bench/chaos/run.ts';

/** Fails with the run's seed and problems unless the run was clean and struck `faults` faults. */
export function assertChaosClean(r: ChaosResult, faults: number): void {
  const summary = `seed ${r.seed}: ${r.problems.join('\n')}`;
  assert.equal(r.faults.length, faults, summary);
  assert.ok(r.sends.answered > 50, `traffic flowed (${r.sends.answered} answered) ${summary}`);
  assert.equal(r.sends.unanswered, 0, summary);
  assert.equal(r.lost, 0, summary);
  assert.equal(r.doubled, 0, summary);
  assert.equal(r.diverged, 0, summary);
  assert.equal(r.densityProblems, 0, summary);
  // A refused send is a problem too (run.ts): the traffic sends only what the server should accept.
  assert.ok(r.ok, summary);
}
