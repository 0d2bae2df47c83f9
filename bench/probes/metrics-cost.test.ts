// A measurement kept to reproduce BENCHMARKS.md "Issue 13: what metrics cost" (not in npm test, which reads test/
// only): what the metrics hooks cost on the hot path, per call, with the real ProcessMetrics and EdgeStats, and what
// one scrape of /metrics costs on a one-process server.
// Run: node --import tsx --test --test-reporter=spec bench/probes/metrics-cost.test.ts
import { test } from 'node:test';
import { ProcessMetrics } from '../../src/ops/metrics.ts';
// eslint-disable-next-line no-restricted-imports -- a probe of the server's own hot path, not a client
import { EdgeStats } from '../../src/transports/edge-stats.ts';
import { startServer } from '../../test/helpers/server.ts';

const N = 1_000_000;
const REPS = 7;

/** Median ns per call of `fn(i)` over REPS runs of N calls. */
function nsPerCall(fn: (i: number) => void): number {
  const runs: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) fn(i);
    runs.push(Number(process.hrtime.bigint() - t0) / N);
  }
  return runs.sort((a, b) => a - b)[REPS >> 1]!;
}

test('metrics hook costs', async () => {
  const metrics = new ProcessMetrics('single');
  const edge = new EdgeStats();
  metrics.watchGateway({ connectionStats: () => ({ bufferedBytes: 0, byTransport: {}, byHeartbeatMs: {} }), parkedPolls: () => 0, edgeStats: edge });
  const now = Date.now();
  const answer = '{"ret":0,"msgId":"123456","seq":42,"createTime":1796316050227}';
  const events = [
    { type: 'news' as const, news: { uin: 1, prevSeq: 1, head: 2, selector: 1, entries: ['{}'] } as { committedAt?: number } },
    { type: 'news' as const, news: { uin: 2, prevSeq: 1, head: 2, selector: 1, entries: ['{}'] } as { committedAt?: number } },
  ];
  const rows = {
    'sendCommitted (histogram observe)': nsPerCall((i) => metrics.sendCommitted(2 + (i & 15))),
    'batchDurable (3 observes, once per batch)': nsPerCall((i) => metrics.batchDurable(1 + (i & 31), 0.3, 4)),
    'EdgeStats.answeredBody (ret parse + map)': nsPerCall(() => edge.answeredBody('tcp', answer)),
    'EdgeStats.delivered (Date.now + observe)': nsPerCall(() => edge.delivered(1, now)),
    'committedAt stamp of a 2-event batch': nsPerCall((i) => {
      for (const ev of events) ev.news.committedAt = i;
    }),
  };
  metrics.close();

  const srv = await startServer();
  const scrapes: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t0 = performance.now();
    await (await fetch(srv.url + '/metrics')).text();
    scrapes.push(performance.now() - t0);
  }
  const text = await (await fetch(srv.url + '/metrics')).text();
  await srv.stop();
  scrapes.sort((a, b) => a - b);
  console.log(JSON.stringify({ nsPerCall: rows, scrape: { medianMs: scrapes[25], p90Ms: scrapes[45], bytes: text.length, lines: text.split('\n').length } }, null, 2));
});
