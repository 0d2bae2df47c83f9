// Random QR login requests (docs/protocol.md "QR login"): any query to the long poll and any body to new, scan and
// confirm gets a JSON answer with the ret its input deserves (1 for a malformed field, 3 for a well-formed uuid
// nobody asked for, 1205 once an address has polled too many unknown ones), never a 500, never a session; and the
// server still logs a device in by QR afterwards.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { QR_UUID_PATTERN } from '../../src/protocol/index.ts';
import { qrNew, qrPoll } from '../helpers/qr.ts';
import { api, startServer, userDevice, type Device, type TestServer } from '../helpers/server.ts';

let srv: TestServer;
let dev: Device;
before(async () => {
  srv = await startServer();
  dev = await userDevice(srv.url, 'qrfuzz');
});
after(() => srv.stop());

const isUuid = (v: unknown) => typeof v === 'string' && new RegExp(QR_UUID_PATTERN).test(v);
const uuidLike = fc.oneof(fc.stringMatching(/^[0-9a-f]{32}$/), fc.string({ maxLength: 40 }), fc.stringMatching(/^[0-9a-fA-F]{30,34}$/), fc.jsonValue());

test('random poll queries get ret 1, 3 or 1205 and never a 500', async () => {
  await fc.assert(
    fc.asyncProperty(uuidLike, fc.option(fc.oneof(fc.constantFrom('waiting', 'scanned', 'confirmed', 'expired'), fc.string())), fc.option(fc.string().filter((t) => Number.isNaN(Number(t)))), async (uuid, state, timeout) => {
      // A numeric timeout is always 0 (never hold a poll in a fuzz run); other strings are malformed.
      const q = new URLSearchParams({ uuid: String(uuid), timeout: timeout ?? '0' });
      if (state !== null) q.set('state', state);
      const res = await fetch(`${srv.url}/api/qrlogin/poll?${q}`);
      assert.notEqual(res.status, 500);
      const answer = await res.json();
      const isValid = isUuid(String(uuid)) && (state === null || state === 'waiting' || state === 'scanned') && timeout === null;
      assert.ok(isValid ? answer.ret === 3 || answer.ret === 1205 : answer.ret === 1, `${q}: ${JSON.stringify(answer)}`);
    }),
    { numRuns: Number(process.env.FUZZ_RUNS ?? 300) },
  );
});

test('random scan, confirm and new bodies never log anything in and never answer 500', async () => {
  const body = fc.oneof(fc.record({ uuid: uuidLike }, { requiredKeys: [] }), fc.dictionary(fc.constantFrom('uuid', 'deviceId', 'deviceName', 'x'), fc.jsonValue(), { maxKeys: 3 }), fc.jsonValue());
  await fc.assert(
    fc.asyncProperty(fc.constantFrom('/api/qrlogin/scan', '/api/qrlogin/confirm', '/api/qrlogin/new'), body, async (path, b) => {
      const r = await api(srv.url, path, b, dev.sid);
      assert.notEqual(r.status, 500, `${path} ${JSON.stringify(b)}`);
      if (path !== '/api/qrlogin/new') assert.ok([1, 3].includes(r.body.ret), `${path} ${JSON.stringify(b)}: ${JSON.stringify(r.body)}`);
      else assert.ok([0, 1].includes(r.body.ret), JSON.stringify(r.body));
    }),
    { numRuns: Number(process.env.FUZZ_RUNS ?? 300) },
  );
  const sessions = (await api(srv.url, '/api/sessions', {}, dev.sid)).body.sessions;
  assert.equal(sessions.length, 1, 'only the fuzzing device');
  // Still serving: a real QR login goes through.
  const { uuid } = await qrNew(srv.url, 'after-fuzz');
  assert.equal((await api(srv.url, '/api/qrlogin/scan', { uuid }, dev.sid)).body.ret, 0);
  assert.equal((await api(srv.url, '/api/qrlogin/confirm', { uuid }, dev.sid)).body.ret, 0);
  assert.equal((await qrPoll(srv.url, uuid)).state, 'confirmed');
});
