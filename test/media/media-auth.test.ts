// A chunk PUT is authenticated before its body is read: a client without a session gets 401 {ret:1100} and a
// closed connection while its 16 MiB body is still unsent (#11). Driven by hand over a raw socket.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startServer, type TestServer } from '../helpers/server.ts';

const DECLARED_BYTES = 16 * 1024 * 1024;
/** How long the test waits for the answer before failing instead of hanging (not a timing assertion). */
const HANG_GUARD_MS = 15_000;

interface RawAnswer {
  head: string;
  body: any;
}

/**
 * Sends only the headers of a PUT that declares a 16 MiB body, then reads until the server closes the connection
 * (it resolves only then: a server that waits for the body never closes, and the guard fails the test).
 */
function putHeadersOnly(port: number, authorization: string | undefined): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const guard = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer and no close within ${HANG_GUARD_MS} ms: ${Buffer.concat(chunks).toString()}`));
    }, HANG_GUARD_MS);
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(guard);
      const text = Buffer.concat(chunks).toString('latin1');
      const at = text.indexOf('\r\n\r\n');
      const body = text.slice(at + 4);
      resolve({ head: text.slice(0, at), body: body ? JSON.parse(body) : undefined });
    });
    socket.write(
      'PUT /api/media/AAAAAAAAAAAAAAAAAAAAAA/0 HTTP/1.1\r\n' +
        'Host: 127.0.0.1\r\n' +
        (authorization ? `Authorization: ${authorization}\r\n` : '') +
        'Content-Type: application/octet-stream\r\n' +
        `Content-Length: ${DECLARED_BYTES}\r\n\r\n`,
    );
  });
}

describe('chunk PUT authentication', () => {
  let srv: TestServer;
  before(async () => (srv = await startServer()));
  after(() => srv.stop());

  for (const [what, authorization] of [
    ['an unknown bearer', 'Bearer not-a-session-at-all'],
    ['no Authorization header', undefined],
  ] as const) {
    it(`answers ${what} with 401 {ret:1100} and closes before the body is sent`, async () => {
      const answer = await putHeadersOnly(srv.httpPort, authorization);
      assert.match(answer.head, /^HTTP\/1\.1 401 /);
      assert.match(answer.head, /\r\nconnection: close/i);
      assert.equal(answer.body.ret, 1100);
      assert.match(answer.body.errMsg, /not logged in/);
    });
  }
});
