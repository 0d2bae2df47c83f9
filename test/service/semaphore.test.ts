// The semaphore that caps concurrent image decodes: never more than its limit at once, turns in call order,
// and a failing task gives its turn back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Semaphore } from '../../src/service/semaphore.ts';

test('runs at most `max` tasks at once, starts the waiting ones in call order, and frees the turn of a failed task', async () => {
  const sem = new Semaphore(2);
  let running = 0;
  let peak = 0;
  const started: number[] = [];
  const releases: (() => void)[] = [];
  const results = Array.from({ length: 5 }, (_, i) =>
    sem.run(async () => {
      started.push(i);
      running++;
      peak = Math.max(peak, running);
      await new Promise<void>((resolve) => releases.push(resolve));
      running--;
      if (i === 1) throw new Error('task 1 fails');
      return i;
    }),
  );
  const settling = Promise.allSettled(results); // handles task 1's rejection from the start
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, [0, 1]);
  assert.equal(sem.waiting, 3);
  while (releases.length) {
    releases.shift()!();
    await new Promise((r) => setImmediate(r));
  }
  const settled = await settling;
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
  assert.equal(peak, 2);
  assert.deepEqual(settled.map((s) => (s.status === 'fulfilled' ? s.value : 'failed')), [0, 'failed', 2, 3, 4]);
  // All turns are back: two new tasks start at once.
  let both = 0;
  await Promise.all([sem.run(async () => both++), sem.run(async () => both++)]);
  assert.equal(both, 2);
});
