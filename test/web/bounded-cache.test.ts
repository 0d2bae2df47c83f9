// The web model's media caches (web/src/bounded-cache.ts) are bounded: driven past the bound, the least recently
// used entry goes and its value is handed to onEvict (the model revokes the object URL there), a hit refreshes an
// entry, a failed load is forgotten, and clear() hands over every value.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BoundedCache } from '../../web/src/bounded-cache.ts';

const tick = () => new Promise((r) => setImmediate(r));

test('keeps at most max entries, evicting the least recently used to onEvict', async () => {
  const evicted: string[] = [];
  const cache = new BoundedCache<string>(3, (v) => evicted.push(v));
  let loads = 0;
  const load = (k: string) => () => {
    loads++;
    return Promise.resolve(`url:${k}`);
  };
  for (const k of ['a', 'b', 'c']) await cache.get(k, load(k));
  assert.equal(await cache.get('a', load('a')), 'url:a', 'a hit');
  assert.equal(loads, 3);
  for (let i = 0; i < 50; i++) await cache.get(`k${i}`, load(`k${i}`));
  await tick();
  assert.equal(cache.size, 3);
  assert.equal(evicted.length, 50, 'every entry pushed out was handed over once');
  assert.deepEqual(evicted.slice(0, 3), ['url:b', 'url:c', 'url:a'], 'b and c went before a, which was used after them');
  assert.equal(await cache.get('k49', load('k49')), 'url:k49');
  assert.equal(loads, 53);
  cache.clear();
  await tick();
  assert.equal(cache.size, 0);
  assert.deepEqual(evicted.slice(-3).sort(), ['url:k47', 'url:k48', 'url:k49']);
});

test('forgets a failed load, so the next ask loads again', async () => {
  const cache = new BoundedCache<string>(2);
  await assert.rejects(cache.get('x', () => Promise.reject(new Error('media 404'))), /404/);
  await tick();
  assert.equal(cache.size, 0);
  assert.equal(await cache.get('x', () => Promise.resolve('ok')), 'ok');
});
