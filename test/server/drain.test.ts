// Health, readiness and the drain (docs/operations.md "Health and readiness", "Draining and rolling restarts";
// PROTOCOL.md `/healthz`, `/readyz`, ret 1102): readiness flips to 503 when the node drains or its store cannot
// commit; a drain closes the listeners at once and tells every long connection (ERROR 1102) and parked long-poll
// (ret 1102) to go, spread over the window; SIGTERM drains a process, which then exits 0.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { describe, test } from 'node:test';
import { OP, RET } from '../../src/protocol/index.ts';
import { spreadOver } from '../../src/transports/drain.ts';
import { Readiness } from '../../src/server/readiness.ts';
import { EXIT_DRAIN_OVERRAN } from '../../src/server/lifecycle.ts';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { heldFsync } from '../helpers/gated-fsync.ts';
import { spawnServerProcess } from '../helpers/process.ts';
import { api, startServer, syncAll, userDevice } from '../helpers/server.ts';
import { authedWire, type WireClient } from '../helpers/wire.ts';

/** One raw HTTP/1.1 exchange on a socket of its own: `head` sent first, `rest` once `between` resolved. */
async function rawHttp(port: number, head: string, between: () => Promise<void>, rest: string): Promise<{ status: number; headers: string; body: string }> {
  const socket = connect({ port, host: '127.0.0.1' });
  await once(socket, 'connect');
  let text = '';
  socket.on('data', (d) => (text += d.toString('utf8')));
  const ended = once(socket, 'close');
  socket.write(head);
  await between();
  socket.write(rest);
  await ended;
  const [headers, body] = text.split('\r\n\r\n', 2) as [string, string];
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(headers)?.[1]), headers, body };
}

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => (s.destroy(), resolve(false)));
    s.once('error', () => resolve(true));
  });
}

describe('spreadOver', () => {
  test('runs every action once, the first at once and the rest on later timer turns, in an order that is not the given one', async () => {
    const order: number[] = [];
    // A seeded shuffle that moves the first item (a fixed source, so the test cannot flake on a lucky identity draw).
    const random = () => 0.3;
    const spread = spreadOver(Array.from({ length: 5 }, (_, i) => () => order.push(i)), 200, random);
    assert.equal(order.length, 1, 'the first runs at once, the others wait for their turn');
    await spread.done;
    assert.deepEqual([...order].sort(), [0, 1, 2, 3, 4]);
    assert.notDeepEqual(order, [0, 1, 2, 3, 4]);
    assert.equal(spread.fired, 5);
  });

  test('finishNow runs what is left at once; a zero window runs everything at once', async () => {
    let n = 0;
    const spread = spreadOver(Array.from({ length: 4 }, () => () => n++), 60_000);
    assert.equal(n, 1);
    spread.finishNow();
    await spread.done;
    assert.equal(n, 4);
    let m = 0;
    spreadOver([() => m++, () => m++], 0);
    assert.equal(m, 2);
  });
});

describe('Readiness', () => {
  test('names the first failed check, reuses a probed result for cacheMs, and reads instant checks on every probe', async () => {
    let isDraining = false;
    let probes = 0;
    let isStoreOk = true;
    const r = new Readiness({
      instant: [() => void (isDraining && (() => { throw new Error('draining'); })())],
      probed: [{ name: 'the store', check: () => { probes++; if (!isStoreOk) throw new Error('the store could not commit (EIO)'); } }],
      cacheMs: 60_000,
    });
    assert.equal((await r.check()).ret, RET.OK);
    isStoreOk = false;
    assert.equal((await r.check()).ret, RET.OK, 'within cacheMs the last probe answers');
    assert.equal(probes, 1);
    isDraining = true;
    const drained = await r.check();
    assert.equal(drained.ret, RET.SERVER_ERROR);
    assert.deepEqual(JSON.parse(drained.body), { ret: RET.SERVER_ERROR, errMsg: 'not ready: draining' });
  });

  test('a probed check that does not answer within timeoutMs fails, named', async () => {
    const r = new Readiness({ instant: [], probed: [{ name: 'Redis', check: () => new Promise(() => {}) }], timeoutMs: 50 });
    const answer = await r.check();
    assert.equal(JSON.parse(answer.body).errMsg, 'not ready: Redis did not answer within 50 ms');
  });
});

describe('/healthz and /readyz', () => {
  // The held disk is a seam of the SQLite store.
  const skip = process.env.STORE_UNDER_TEST === 'postgres' ? 'the held disk is a seam of the SQLite store' : undefined;
  test('answer {ret:0} while serving; /readyz answers 503 "not ready: the store …" while the disk does not sync, and 200 again after', { skip }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'synchat-readyz-'));
    const disk = heldFsync(dir);
    const srv = await startServer({}, { fsyncModule: disk.module });
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    t.after(() => srv.stop());
    t.after(() => disk.release());
    for (const path of ['/healthz', '/readyz']) {
      const r = await fetch(srv.url + path);
      assert.equal(r.status, 200, path);
      assert.deepEqual(await r.json(), { ret: 0 });
    }
    disk.hold();
    // The readiness commit waits for the held fsync; the probe gives up after its timeout. A cached answer from
    // the probe above may serve for up to a second: ask until the held disk shows.
    let r: Response;
    for (;;) {
      r = await fetch(srv.url + '/readyz');
      if (r.status !== 200) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.equal(r.status, 503);
    assert.deepEqual(await r.json(), { ret: RET.SERVER_ERROR, errMsg: 'not ready: the store did not answer within 2000 ms' });
    assert.equal((await fetch(srv.url + '/healthz')).status, 200, 'alive all the same');
    disk.release();
    for (;;) {
      r = await fetch(srv.url + '/readyz');
      if (r.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.deepEqual(await r.json(), { ret: 0 });
  });
});

describe('drain', () => {
  test('refuses new connections at once, answers /readyz 503 "draining" on a request already arriving, and serves other requests with Connection: close', async (t) => {
    const srv = await startServer();
    t.after(() => srv.stop());
    const alice = await userDevice(srv.url, 'alice');
    // One long connection keeps the drain's window open (its turn may come last).
    const { client } = await authedWire('tcp', srv, alice.sid);
    let draining: Promise<void> | undefined;
    const startDrain = async () => {
      draining = srv.drain(30_000, 1000);
      await srv.core.startDrain();
    };
    const ready = await rawHttp(srv.httpPort, 'GET /readyz HTTP/1.1\r\nHost: x\r\n', startDrain, '\r\n');
    assert.equal(ready.status, 503, ready.headers);
    assert.deepEqual(JSON.parse(ready.body), { ret: RET.SERVER_ERROR, errMsg: 'not ready: draining' });
    assert.match(ready.headers, /connection: close/i);
    assert.ok(await refusesConnections(srv.httpPort), 'the HTTP listener is closed');
    assert.ok(await refusesConnections(srv.tcpPort), 'the TCP listener is closed');
    client.close();
    await draining;
  });

  test('spreads ERROR 1102 over the long connections and ret 1102 (503, Retry-After) over parked long-polls: when the first is told, most others still serve', async (t) => {
    const srv = await startServer();
    t.after(() => srv.stop());
    const wires: WireClient[] = [];
    const polls: Promise<Response>[] = [];
    for (let i = 0; i < 6; i++) {
      const d = await userDevice(srv.url, `user${i}`);
      wires.push((await authedWire(i % 2 ? 'ws' : 'tcp', srv, d.sid)).client);
      const p = await userDevice(srv.url, `user${i}`, 'poller');
      polls.push(fetch(`${srv.url}/api/synccheck?syncKey=0&timeout=60000`, { headers: { authorization: `Bearer ${p.sid}` } }));
    }
    while (srv.parkedPolls < 6) await new Promise((r) => setTimeout(r, 20));
    // 12 told over 24 s: one every 2 s. The first is told at once.
    const drained = srv.drain(24_000, 1000);
    const goneAway = (w: WireClient) => w.received.some((p) => p.op === OP.ERROR && p.body?.ret === RET.GOING_AWAY);
    const firstPoll = Promise.race(polls.map((p, i) => p.then(() => i)));
    const firstWire = Promise.race(wires.map((w, i) => w.next((p) => p.op === OP.ERROR).then(() => i)));
    await Promise.race([firstPoll, firstWire]);
    // Everyone not told yet still answers a heartbeat now: the rest were not all sent away with the first.
    const stillServing = await Promise.all(
      wires.map(async (w) => {
        if (goneAway(w)) return false;
        try {
          await w.request(OP.HEARTBEAT);
          return true;
        } catch {
          return false;
        }
      }),
    );
    assert.ok(stillServing.filter(Boolean).length >= 3, `most connections still serve after the first 1102 (${stillServing})`);
    await drained;
    for (const [i, w] of wires.entries()) {
      await w.waitClosed();
      const error = w.received.find((p) => p.op === OP.ERROR);
      assert.deepEqual(error?.body, { ret: RET.GOING_AWAY, errMsg: 'this server is going away: reconnect, to another gateway if there is one' }, `connection ${i}`);
    }
    for (const p of polls) {
      const r = await p;
      assert.equal(r.status, 503);
      assert.equal(r.headers.get('retry-after'), '0');
      assert.equal((await r.json()).ret, RET.GOING_AWAY);
    }
  });

  test('SIGTERM with a write that cannot become durable (a held disk): the process exits 1 at SYNCHAT_DRAIN_MS, the write unanswered', { skip: process.env.STORE_UNDER_TEST === 'postgres' ? 'the held disk is a seam of the SQLite store' : undefined }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'synchat-overrun-'));
    const fsyncDir = join(dir, 'fsync');
    mkdirSync(fsyncDir);
    const disk = heldFsync(fsyncDir);
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/held-disk-server.ts', join(dir, 'data'), fsyncDir, '1500'], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => {
      child.kill('SIGKILL');
      disk.release();
      rmSync(dir, { recursive: true, force: true });
    });
    const exited = once(child, 'exit');
    const ports = JSON.parse((await once(createInterface({ input: child.stdout! }), 'line'))[0] as string);
    const url = `http://127.0.0.1:${ports.httpPort}`;
    disk.hold();
    const write = fetch(`${url}/api/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'held', password: 'password-held', displayName: 'Held' }) }).then(
      () => 'answered',
      () => 'unanswered',
    );
    await disk.waitParked(0);
    child.kill('SIGTERM');
    const [code] = (await exited) as [number | null];
    assert.equal(code, EXIT_DRAIN_OVERRAN, 'the deadline, not the held write, ended the process');
    // Never answered: it may or may not be durable, and the client sends it again.
    assert.equal(await write, 'unanswered');
  });

  test('SIGTERM: the process tells its long connection ERROR 1102 and its parked long-poll ret 1102, and exits 0', async () => {
    // The default window (10 s): room for a loaded machine's close after the 8 s spread (two told: at 0 and at 4 s).
    const server = await spawnServerProcess({ SYNCHAT_WORKERS: '0', SYNCHAT_TCP_PORT: '0' });
    try {
      const alice = await userDevice(server.url, 'alice');
      const bob = await userDevice(server.url, 'bob');
      const gateways = (await api(server.url, '/api/gateways')).body.gateways;
      const tcpPort = Number(/:(\d+)$/.exec(gateways.find((g: any) => g.transport === 'tcp').url)![1]);
      const { client } = await authedWire('tcp', { httpPort: Number(new URL(server.url).port), tcpPort }, bob.sid);
      const head = (await syncAll(server.url, alice.sid)).syncKey;
      const poll = fetch(`${server.url}/api/synccheck?syncKey=${head}&timeout=60000`, { headers: { authorization: `Bearer ${alice.sid}` } });
      // Parked once a heartbeat on the long connection has come back after it (one process, one event loop).
      await new Promise((r) => setTimeout(r, 200));
      await client.request(OP.HEARTBEAT);
      server.child.kill('SIGTERM');
      const [exitCode] = (await once(server.child, 'exit')) as [number | null];
      assert.equal(exitCode, 0, 'drained within SYNCHAT_DRAIN_MS');
      assert.deepEqual(client.received.find((p) => p.op === OP.ERROR)?.body?.ret, RET.GOING_AWAY);
      const r = await poll;
      assert.equal(r.status, 503);
      assert.equal((await r.json()).ret, RET.GOING_AWAY);
    } finally {
      await server.kill9().catch(() => undefined);
    }
  });
});
