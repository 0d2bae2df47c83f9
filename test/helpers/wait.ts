/** Polling for tests: wait until a condition holds, or fail naming it (a hang guard, not a timing assertion). */
import assert from 'node:assert/strict';

/** Polls `cond` (awaited when async) every `everyMs` until it holds; fails with `what` after `guardMs`. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, what: string, guardMs = 30_000, everyMs = 10): Promise<void> {
  const started = Date.now();
  while (!(await cond())) {
    if (Date.now() - started > guardMs) assert.fail(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
