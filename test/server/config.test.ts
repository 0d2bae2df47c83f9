// Settings come from SYNCHAT_* variables over one DEFAULTS object; mistakes name the variable.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, DEFAULTS, envName, loadConfig } from '../../src/server/config.ts';

test('reads SYNCHAT_* over the defaults, coercing numbers', () => {
  const c = loadConfig({ SYNCHAT_HTTP_PORT: '9090', SYNCHAT_RATE_LIMIT: 'off', PATH: '/bin' });
  assert.equal(c.httpPort, 9090);
  assert.equal(c.rateLimit, 'off');
  assert.equal(c.tcpPort, DEFAULTS.tcpPort);
  assert.equal(c.dataDir, './data');
});

test('rejects an unknown SYNCHAT_ variable and a bad value, naming the variable', () => {
  assert.throws(() => loadConfig({ SYNCHAT_HTTP_PROT: '1' }), (e: Error) => e instanceof ConfigError && /SYNCHAT_HTTP_PROT is not a Synchat setting/.test(e.message));
  assert.throws(() => loadConfig({ SYNCHAT_HTTP_PORT: 'eighty' }), /SYNCHAT_HTTP_PORT/);
  assert.throws(() => loadConfig({ SYNCHAT_RATE_LIMIT: 'maybe' }), /SYNCHAT_RATE_LIMIT/);
});

test('refuses a store or bus URL of another scheme, naming the variable', () => {
  assert.throws(() => loadConfig({ SYNCHAT_POSTGRES_URL: 'mysql://x' }), /SYNCHAT_POSTGRES_URL/);
  assert.throws(() => loadConfig({ SYNCHAT_REDIS_URL: 'http://x' }), /SYNCHAT_REDIS_URL/);
  assert.equal(loadConfig({ SYNCHAT_POSTGRES_URL: 'postgres://u@h:5432/d', SYNCHAT_REDIS_URL: 'redis://h:6379' }).redisUrl, 'redis://h:6379');
});

test('every setting has a SYNCHAT_ name documented in the README', async () => {
  const { readFileSync } = await import('node:fs');
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  for (const key of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) {
    assert.ok(readme.includes(envName(key)), `${envName(key)} is in the README`);
  }
});
