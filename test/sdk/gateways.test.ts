// The client's gateway directory alone: random picks among live gateways, failures remembered for a while, the
// list asked again when stale, HTTP base URLs to fail over to. Clock and random source are parameters.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayDirectory, type GatewayDirectoryOptions } from '../../src/sdk/gateways.ts';
import type { Gateway } from '../../src/sdk/index.ts';

/** Three nodes' gateways, as `/api/gateways` lists them. */
const LIST: Gateway[] = [1, 2, 3].flatMap((n) => [
  { transport: 'tcp' as const, url: `tcp://10.0.0.${n}:8081` },
  { transport: 'ws' as const, url: `ws://10.0.0.${n}:8080/ws` },
  { transport: 'http' as const, url: `http://10.0.0.${n}:8080` },
]);

function directory(extra: Partial<GatewayDirectoryOptions> = {}) {
  const clock = { ms: 1_000_000 };
  const dir = new GatewayDirectory({ httpUrls: ['http://10.0.0.1:8080/'], failedGatewayMs: 30_000, refreshMs: 60_000, now: () => clock.ms, ...extra });
  return { dir, clock };
}

/** A random source that returns `values` in turn. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

describe('GatewayDirectory', () => {
  it('picks at random among the live gateways of a transport, not always the first', () => {
    const picks = new Set<string | undefined>();
    for (const r of [0, 0.4, 0.8]) {
      const { dir } = directory({ random: () => r });
      dir.replace(LIST);
      picks.add(dir.pick('tcp'));
    }
    assert.deepEqual([...picks].sort(), ['tcp://10.0.0.1:8081', 'tcp://10.0.0.2:8081', 'tcp://10.0.0.3:8081']);
  });

  it('offers every live gateway of a transport once, in an order that depends on the random source', () => {
    const { dir } = directory({ random: sequence(0, 0.9) });
    dir.replace(LIST);
    const order = dir.candidates('ws');
    assert.deepEqual([...order].sort(), ['ws://10.0.0.1:8080/ws', 'ws://10.0.0.2:8080/ws', 'ws://10.0.0.3:8080/ws']);
    assert.notDeepEqual(order, LIST.filter((g) => g.transport === 'ws').map((g) => g.url), 'shuffled, not the listed order');
  });

  it('avoids a failed gateway for failedGatewayMs, then offers it again', () => {
    let r = 0;
    const { dir, clock } = directory({ random: () => r });
    dir.replace(LIST);
    dir.markFailed('tcp://10.0.0.2:8081');
    assert.ok(dir.isFailed('tcp://10.0.0.2:8081'));
    assert.deepEqual(dir.candidates('tcp').sort(), ['tcp://10.0.0.1:8081', 'tcp://10.0.0.3:8081']);
    for (let i = 0; i < 20; i++) {
      r = i / 20;
      assert.notEqual(dir.pick('tcp'), 'tcp://10.0.0.2:8081');
    }
    clock.ms += 30_000;
    assert.equal(dir.isFailed('tcp://10.0.0.2:8081'), false);
    assert.equal(dir.candidates('tcp').length, 3);
  });

  it('forgets a failure when the gateway works again', () => {
    const { dir } = directory();
    dir.replace(LIST);
    dir.markFailed('ws://10.0.0.1:8080/ws');
    dir.markWorking('ws://10.0.0.1:8080/ws');
    assert.equal(dir.candidates('ws').length, 3);
  });

  it('offers the failed gateways, longest-failed first, when every one of a transport failed', () => {
    const { dir, clock } = directory();
    dir.replace(LIST);
    for (const n of [3, 1, 2]) {
      dir.markFailed(`tcp://10.0.0.${n}:8081`);
      clock.ms += 1000;
    }
    assert.deepEqual(dir.candidates('tcp'), ['tcp://10.0.0.3:8081', 'tcp://10.0.0.1:8081', 'tcp://10.0.0.2:8081']);
    assert.equal(dir.pick('tcp'), undefined, 'no live one to spread to');
  });

  it('asks for the list when it was never asked, after a failure, and when it is older than refreshMs', () => {
    const { dir, clock } = directory();
    assert.ok(dir.needsRefresh, 'never asked');
    dir.replace(LIST);
    assert.equal(dir.needsRefresh, false);
    dir.markFailed('tcp://10.0.0.1:8081');
    assert.ok(dir.needsRefresh, 'a gateway failed since');
    dir.replace(LIST);
    clock.ms += 59_999;
    assert.equal(dir.needsRefresh, false);
    clock.ms += 1;
    assert.ok(dir.needsRefresh, 'older than refreshMs');
  });

  it('keeps a fixed list: never asks, never replaces it', () => {
    const fixed: Gateway[] = [{ transport: 'ws', url: 'ws://here/ws' }];
    const { dir } = directory({ gateways: fixed });
    assert.ok(dir.isFixed);
    assert.equal(dir.needsRefresh, false);
    dir.replace(LIST);
    dir.markFailed('ws://here/ws');
    assert.equal(dir.needsRefresh, false);
    assert.deepEqual(dir.gateways, fixed);
  });

  it('names the next HTTP base URL a request has not tried: the listed ones and the seeds, live ones only', () => {
    const { dir } = directory({ httpUrls: ['http://lb.example:8080', 'http://10.0.0.1:8080'], random: () => 0 });
    assert.equal(dir.next(new Set(['http://lb.example:8080'])), 'http://10.0.0.1:8080', 'before any list: the seeds');
    dir.replace(LIST);
    dir.markFailed('http://10.0.0.1:8080');
    const tried = new Set(['http://lb.example:8080', 'http://10.0.0.1:8080']);
    const seen = new Set<string>();
    for (let url = dir.next(tried); url !== undefined; url = dir.next(tried)) {
      seen.add(url);
      tried.add(url);
    }
    assert.deepEqual([...seen].sort(), ['http://10.0.0.2:8080', 'http://10.0.0.3:8080']);
  });

  it('drops entries that are not gateways and ignores trailing slashes', () => {
    const { dir } = directory();
    dir.replace([{ transport: 'quic', url: 'quic://x' }, { transport: 'tcp' }, null, 'tcp://y', { transport: 'http', url: 'http://10.0.0.1:8080/' }]);
    assert.deepEqual(dir.gateways, [{ transport: 'http', url: 'http://10.0.0.1:8080' }]);
    assert.deepEqual(dir.candidates('http'), ['http://10.0.0.1:8080'], 'listed and seed URL are one');
  });
});
