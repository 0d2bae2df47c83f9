// Random request bodies for every call of the API table: never a 500, never a crash, always a JSON answer with
// a known ret — and the server still serves afterwards.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { CALLS, RET_INFO } from '../../src/protocol/index.ts';
import { startServer, userDevice, type Device, type TestServer } from '../helpers/server.ts';

let srv: TestServer;
let dev: Device;
before(async () => {
  srv = await startServer();
  dev = await userDevice(srv.url, 'fuzzer');
});
after(async () => {
  await srv.stop();
});

const paths = Object.keys(CALLS).filter((p) => p !== '/api/logout' && p !== '/api/sessions/revoke');
const known = new Set(Object.keys(RET_INFO).map(Number));

const fieldNames = fc.constantFrom('username', 'password', 'displayName', 'deviceId', 'syncKey', 'limit', 'clientMsgId', 'to', 'type', 'content', 'peer', 'msgId', 'groupId', 'members', 'add', 'remove', 'name', 'note', 'sessionId', 'uuid', 'state', 'deviceName', '__proto__', 'constructor');
const body = fc.oneof(
  fc.dictionary(fieldNames, fc.jsonValue(), { maxKeys: 6 }),
  fc.jsonValue(),
  fc.string().map((s) => ({ raw: s })),
);

test('random bodies to every call get a JSON answer with a known ret and never a 500', async () => {
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...paths), body, fc.boolean(), fc.boolean(), async (path, b, isAuthed, isRawText) => {
      const spec = CALLS[path as keyof typeof CALLS];
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (isAuthed) headers.authorization = `Bearer ${dev.sid}`;
      let res: Response;
      if (spec.method === 'GET') {
        const q = new URLSearchParams(typeof b === 'object' && b && !Array.isArray(b) ? Object.entries(b).map(([k, v]) => [k, String(v)]) : []);
        // Never hold a poll in a fuzz run: a valid synccheck answers at once with timeout 0.
        q.set('timeout', '0');
        res = await fetch(`${srv.url}${path}?${q}`, { headers });
      } else {
        const text = isRawText && typeof b === 'object' && b && 'raw' in (b as object) ? String((b as any).raw) : JSON.stringify(b);
        res = await fetch(srv.url + path, { method: 'POST', headers, body: text });
      }
      assert.notEqual(res.status, 500, `${path} ${JSON.stringify(b)}`);
      const answer = await res.json();
      assert.ok(known.has(answer.ret), `${path}: ret ${answer.ret}`);
      if (answer.ret !== 0) assert.equal(typeof answer.errMsg, 'string');
    }),
    { numRuns: Number(process.env.FUZZ_RUNS ?? 300) },
  );
  const alive = await fetch(srv.url + '/api/gateways');
  assert.equal(alive.status, 200);
});
