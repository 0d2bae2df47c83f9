// Rolling restarts under load (issue 13; docs/operations.md "Draining and rolling restarts"): SDK clients over TCP,
// WebSocket and long-poll send steadily while every gateway process of a node is rolled (SIGHUP), and while every
// node of three is drained (SIGTERM, which must exit 0) and started again in turn; then every answered send is in
// every member's log exactly once, every device holds its log to the head, nothing was refused, and the logs are
// dense (the chaos runner's checks, bench/chaos/check.ts).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { runChaos } from '../../bench/chaos/run.ts';
import { assertChaosClean } from '../helpers/chaos.ts';
import { privatePostgresMissing } from '../helpers/private-postgres.ts';

function assertClean(t: TestContext, r: Awaited<ReturnType<typeof runChaos>>, kind: string): void {
  const f = r.faults[0];
  t.diagnostic(`seed ${r.seed}: ${r.sends.total} sends (${r.sends.answered} answered, ${r.sends.resent} after a resend, ${r.sends.answeredDuplicate} "duplicate"); ${f?.kind} from ${f?.atMs} ms for ${f?.downMs} ms of ${r.durationMs} ms`);
  assertChaosClean(r, 1);
  assert.deepEqual(r.faults.map((f) => f.kind), [kind], `seed ${r.seed}`);
  assert.equal(r.sends.refused, 0, `seed ${r.seed}: ${r.problems.join('\n')}`);
}

test('every gateway process of a node rolled (SIGHUP) during mixed traffic: nothing lost, doubled, refused or diverged', async (t) => {
  // Two gateways, each replaced in turn: a fresh one listens, then the old one drains over 2.4 s of its 3 s window.
  const r = await runChaos({ seed: randomInt(1, 2 ** 31), mode: 'single', roll: true, workers: 2, drainMs: 3000, seconds: 12, faults: 1, usersPerTransport: 2 });
  assertClean(t, r, 'roll-gateways');
  assert.equal(r.integrity, 'ok');
  assert.ok(r.sends.tcp > 0 && r.sends.ws > 0 && r.sends.http > 0, 'every transport sent');
});

const clusterMissing = privatePostgresMissing() ?? (spawnSync('redis-server', ['--version']).status === 0 ? undefined : 'redis-server is not installed');
/** Skipped with its reason where PostgreSQL's programs or redis-server are missing; required (a failure) under CI=true. */
const clusterSkip = process.env.CI === 'true' ? undefined : clusterMissing;

test('three nodes on PostgreSQL and Redis, each drained (SIGTERM, exit 0) and started again in turn during mixed traffic: nothing lost, doubled, refused or diverged', { skip: clusterSkip }, async (t) => {
  if (clusterMissing) throw new Error(`required under CI=true: ${clusterMissing}`);
  const r = await runChaos({ seed: randomInt(1, 2 ** 31), mode: 'cluster', roll: true, drainMs: 5000, seconds: 10, faults: 1, usersPerTransport: 2 });
  assertClean(t, r, 'roll-nodes');
});
