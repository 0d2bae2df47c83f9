// docs/errors.md and src/protocol/ret-codes.ts stay in lockstep (fastify test/internals/errors.test.js).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { DISK_FULL_ERRMSG, RET, RET_INFO } from '../../src/protocol/index.ts';

test('docs/errors.md lists every code with its name and HTTP status, and nothing else', () => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| (\d+) \| (\w+) \| (\d+) \|/gm)].map((m) => [Number(m[1]), m[2], Number(m[3])]);
  const table = Object.values(RET).map((code) => [code, RET_INFO[code].name, RET_INFO[code].httpStatus]);
  assert.deepEqual(rows, table);
});

test('docs/errors.md quotes the errMsg of a write refused on a full disk', () => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  assert.ok(doc.includes(`"${DISK_FULL_ERRMSG}"`), DISK_FULL_ERRMSG);
});
