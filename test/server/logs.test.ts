// What the server logs (docs/operations.md "Heartbeats and logs"): structured pino lines with a request id per HTTP
// call (the caller's X-Request-Id when sane, echoed in the answer), reaching the service's own lines; and never a
// secret — sids, passwords, QR uuids — whatever the call, its outcome or where the client put them.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import { after, before, describe, it } from 'node:test';
import { makeLogger } from '../../src/server/build-server.ts';
import { loggableUrl } from '../../src/transports/http/http-transport.ts';
import { api, startServer, userDevice, type TestServer } from '../helpers/server.ts';
import { authedWire } from '../helpers/wire.ts';

/** A pino destination that keeps every line. */
class LogLines extends Writable {
  readonly text: string[] = [];
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    this.text.push(chunk.toString('utf8'));
    done();
  }
  get lines(): any[] {
    return this.text
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  }
  get all(): string {
    return this.text.join('');
  }
}

const PASSWORD = 'correct horse battery staple';

describe('server logs', () => {
  const out = new LogLines();
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ logLevel: 'debug' }, { logDestination: out });
  });
  after(async () => {
    await srv.stop();
  });

  it('names each HTTP call by a request id: the sane X-Request-Id given, else its own; echoed in the answer', async () => {
    const given = await fetch(`${srv.url}/api/gateways`, { headers: { 'x-request-id': 'trace-42.a' } });
    assert.equal(given.headers.get('x-request-id'), 'trace-42.a');
    const insane = await fetch(`${srv.url}/api/gateways`, { headers: { 'x-request-id': 'has spaces {and} braces' } });
    const own = insane.headers.get('x-request-id')!;
    assert.match(own, /^[0-9a-f]{6}-[0-9a-z]+$/);
    await new Promise((r) => setImmediate(r));
    const reqIds = out.lines.filter((l) => l.msg === 'request').map((l) => l.reqId);
    assert.ok(reqIds.includes('trace-42.a') && reqIds.includes(own), `debug lines for both: ${JSON.stringify(reqIds)}`);
  });

  it('logs no sid, password or QR uuid: login, synccheck, refused calls, a sid put in a query, a long connection', async () => {
    const d = await userDevice(srv.url, 'log_alice', 'laptop', PASSWORD);
    const wrong = await api(srv.url, '/api/login', { username: 'log_alice', password: PASSWORD + '!', deviceId: 'laptop' });
    assert.notEqual(wrong.body.ret, 0);
    assert.equal((await api(srv.url, `/api/synccheck?syncKey=0&timeout=0`, undefined, d.sid)).body.ret, 0);
    // A client that puts its sid (or a QR uuid) in the query string: the server ignores it, and must not log it.
    const uuid = 'f'.repeat(32);
    await api(srv.url, `/api/synccheck?syncKey=0&timeout=0&sid=${d.sid}`, undefined, d.sid);
    await api(srv.url, `/api/qrlogin/poll?uuid=${uuid}&timeout=0`, undefined, undefined, 'GET');
    await api(srv.url, '/api/password', { oldPassword: PASSWORD, newPassword: 'x' }, d.sid);
    await api(srv.url, '/api/contacts/list', {}, d.sid + 'x');
    const { client } = await authedWire('tcp', srv, d.sid, 0);
    client.close();
    await new Promise((r) => setImmediate(r));
    assert.ok(out.lines.some((l) => l.msg === 'request' && /sid=\[Redacted\]/.test(l.url)), 'the sid in the query string is logged redacted');
    for (const secret of [d.sid, PASSWORD, uuid]) assert.ok(!out.all.includes(secret), `the logs hold ${secret.slice(0, 6)}…`);
  });

  it(
    'logs a call that fails inside the service at error, with its request id, and without its sid',
    { skip: process.env.STORE_UNDER_TEST === 'postgres' ? 'breaks the SQLite file of the server' : false },
    async () => {
      const d = await userDevice(srv.url, 'log_bob', 'phone', PASSWORD);
      // A broken database, as a bad migration or a hand edit leaves it: the contacts table is gone.
      const db = new Database(join(srv.dataDir, 'synchat.db'));
      db.exec('DROP TABLE contacts');
      db.close();
      const failed = await fetch(`${srv.url}/api/contacts/list`, {
        method: 'POST',
        headers: { authorization: `Bearer ${d.sid}`, 'content-type': 'application/json', 'x-request-id': 'failing-call' },
        body: '{}',
      });
      assert.equal((await failed.json()).ret, 9);
      assert.equal(failed.headers.get('x-request-id'), 'failing-call');
      await new Promise((r) => setImmediate(r));
      const errors = out.lines.filter((l) => l.level >= 50);
      assert.ok(errors.some((l) => l.requestId === 'failing-call' && l.path === '/api/contacts/list' && l.err), `the service's error line carries the request id: ${JSON.stringify(errors)}`);
      assert.ok(!out.all.includes(d.sid), 'the sid of the failing call is not logged');
    },
  );
});

describe('makeLogger', () => {
  it('redacts sids, passwords, tokens, cookies and the bearer header wherever a log call passes them', () => {
    const out = new LogLines();
    const logger = makeLogger({ logLevel: 'info' }, 'test', out);
    logger.error(
      {
        sid: 'SID-1',
        body: { sid: 'SID-2', password: 'PW-1', newPassword: 'PW-2', oldPassword: 'PW-3' },
        ctx: { sid: 'SID-3', token: 'TOK-1', uuid: 'UUID-1' },
        req: { headers: { authorization: 'Bearer SID-4', cookie: 'c=SID-5' } },
      },
      'boom',
    );
    for (const secret of ['SID-1', 'SID-2', 'SID-3', 'SID-4', 'SID-5', 'PW-1', 'PW-2', 'PW-3', 'TOK-1', 'UUID-1']) assert.ok(!out.all.includes(secret), secret);
    assert.equal(out.lines[0].body.sid, '[Redacted]');
  });

  it('strips secret query values from URLs, and only those', () => {
    assert.equal(loggableUrl('/api/synccheck?syncKey=3&sid=abc&timeout=0'), '/api/synccheck?syncKey=3&sid=[Redacted]&timeout=0');
    assert.equal(loggableUrl('/api/qrlogin/poll?UUID=abc'), '/api/qrlogin/poll?UUID=[Redacted]');
    assert.equal(loggableUrl('/api/x?%73id=abc'), '/api/x?%73id=[Redacted]');
    assert.equal(loggableUrl('/api/sync'), '/api/sync');
  });
});
