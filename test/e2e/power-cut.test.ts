// An answered send survives power loss: kill -9 at random moments of a burst, with a disk that keeps only what was
// fsynced (test/helpers/power-cut.ts says what is and is not simulated). The default loses no answered send; with
// SYNCHAT_SQLITE_SYNCHRONOUS=OFF (nothing synced) the same simulation loses answered sends, so the test can fail,
// while a kill -9 alone (what the crash tests do) would have kept them all.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cleanDataFolder, cutPower } from '../helpers/power-cut.ts';

const skip = process.env.STORE_UNDER_TEST === 'postgres' ? "the simulated disk is the SQLite store's" : undefined;
/** Cuts per mode, each at a random moment: bounded, since each starts two servers (~5 s a cut). */
const CUTS = { FULL: 3, OFF: 2 } as const;
/** The latest cut, in ms after the first answered send (a burst answers thousands of sends a second). */
const LATEST_CUT_MS = 400;

test('a simulated power cut keeps every answered send exactly once with the default durability, and loses answered sends with synchronous=OFF', { skip }, async (t) => {
  const base = await cleanDataFolder();
  t.after(() => base.remove());
  for (const synchronous of ['FULL', 'OFF'] as const) {
    for (let i = 0; i < CUTS[synchronous]; i++) {
      const cut = await cutPower(base.dir, synchronous, Math.floor(Math.random() * LATEST_CUT_MS));
      const seen = `${synchronous}, cut ${cut.cutAfterMs} ms after the first answer: ${cut.answered} of ${cut.attempted} sends answered, ${cut.lost.length} lost`;
      assert.equal(cut.integrity, 'ok', seen);
      assert.deepEqual(cut.doubled, [], seen);
      assert.ok(cut.answered > 0, seen);
      if (synchronous === 'FULL') assert.deepEqual(cut.lost, [], seen);
      else {
        assert.ok(cut.lost.length > 0, `${seen}: the simulation lets an unsynced write survive`);
        // What the crash tests see: a kill -9 alone keeps every answered send even when nothing is synced.
        assert.ok(cut.messages.afterKill9 >= cut.answered, `${seen}: ${cut.messages.afterKill9} kept by a kill -9 alone`);
      }
    }
  }
});
