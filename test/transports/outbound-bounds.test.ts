// The outbound bounds of a long connection whose peer stops reading, over raw TCP and WebSocket against real
// listeners: past SYNCHAT_OUTBOUND_HARD_BYTES the connection is dropped; above SYNCHAT_OUTBOUND_BUFFER_BYTES for
// SYNCHAT_OUTBOUND_STALL_MS it is dropped; above the soft bound news is owed as one NOTIFY sent when the link
// drains. The kernel's socket buffers absorb megabytes before the server's own buffer grows, so the reader is
// made to pile up answers to its own SYNCs (about 0.9 MiB each) until the server's stats show its buffer past
// the bound; the server's other connections keep working throughout.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OP } from '../../src/protocol/index.ts';
import { api, befriend, startServer, syncAll, userDevice, type Device, type TestServer } from '../helpers/server.ts';
import { waitUntil } from '../helpers/wait.ts';
import { TRANSPORTS, authedWire, type WireClient, type WireTransport } from '../helpers/wire.ts';

const SOFT = 64 * 1024;
/** Entries of the reader's log: 60 × 15 KiB, so one SYNC from 0 answers about 0.9 MiB in one packet. */
const LOG_ENTRIES = 60;
const BIG = 'x'.repeat(15 * 1024);
/** SYNCs a test may pile up before it gives up (about 45 MiB of answers: far past any kernel buffer). */
const MAX_SYNCS = 50;

let counter = 0;
function uname(prefix: string): string {
  return `${prefix}_${process.pid}_${++counter}`;
}

function text(to: string, content: string) {
  return { clientMsgId: `ob-${++counter}`, to, type: 1, content };
}

/** A reader with a log of about 0.9 MiB and a friend who can write to it. */
async function readerAndFriend(srv: TestServer): Promise<{ reader: Device; friend: Device }> {
  const reader = await userDevice(srv.url, uname('rd'));
  const friend = await userDevice(srv.url, uname('fr'));
  await befriend(srv.url, reader, friend);
  for (let i = 0; i < LOG_ENTRIES; i += 10) {
    await Promise.all(Array.from({ length: 10 }, () => api(srv.url, '/api/sendmsg', text(reader.username, BIG), friend.sid)));
  }
  return { reader, friend };
}

/** The reader's long connection, paused (it reads nothing), and the friend's, which reads (the bystander). */
async function pausedReader(transport: WireTransport, srv: TestServer) {
  const { reader, friend } = await readerAndFriend(srv);
  const { client: bystander } = await authedWire(transport, srv, friend.sid, (await syncAll(srv.url, friend.sid)).syncKey);
  const { client } = await authedWire(transport, srv, reader.sid, 0);
  client.pause();
  return { reader, friend, bystander, client };
}

/** The server's row for the reader's connection, if it is still open. */
function connOf(srv: TestServer, uin: number) {
  return srv.connections.list().find((c) => c.uin === uin);
}

/**
 * Sends SYNC {syncKey: 0} one at a time, without reading, until `stop` holds for the server's row of the
 * connection (or the row is gone); returns the largest buffered byte count seen and how many SYNCs were sent.
 */
async function pileUp(srv: TestServer, client: WireClient, uin: number, stop: (row: NonNullable<ReturnType<typeof connOf>>) => boolean): Promise<{ maxSeen: number; syncs: number }> {
  let maxSeen = 0;
  for (let syncs = 1; syncs <= MAX_SYNCS; syncs++) {
    client.send(OP.SYNC, { syncKey: 0, limit: 1000 });
    // The answer is queued and flushed within a few turns; the stats then show what the kernel did not take.
    await new Promise((r) => setTimeout(r, 40));
    const row = connOf(srv, uin);
    if (!row) return { maxSeen, syncs };
    maxSeen = Math.max(maxSeen, row.bufferedBytes);
    if (stop(row)) return { maxSeen, syncs };
  }
  assert.fail(`the server's buffer for the reader never reached the bound after ${MAX_SYNCS} SYNCs (max ${maxSeen})`);
}

/** The bystander still sends and is pushed to after the reader's connection went. */
async function assertBystanderWorks(srv: TestServer, bystander: WireClient, friend: Device, reader: Device): Promise<void> {
  const sent = await bystander.request(OP.SEND, text(reader.username, 'still here'));
  assert.equal(sent.body.ret, 0);
  const r = await api(srv.url, '/api/sendmsg', text(friend.username, 'back to you'), reader.sid);
  assert.equal(r.body.ret, 0);
  await bystander.next((p) => p.op === OP.PUSH && p.body.entries.some((e: any) => e.content === 'back to you'), 'PUSH to the bystander');
  assert.equal(bystander.isClosed, false);
}

for (const transport of TRANSPORTS as readonly WireTransport[]) {
  describe(`${transport}: outbound hard bound`, () => {
    let srv: TestServer;
    before(async () => {
      // The smallest hard bound the config allows (soft + one packet); a stall time the test never reaches.
      srv = await startServer({ sqliteSynchronous: 'OFF', outboundBufferBytes: SOFT, outboundHardBytes: SOFT + 1024 * 1024, outboundStallMs: 600_000 });
    });
    after(async () => {
      await srv.stop();
    });

    it('drops a connection whose peer stops reading once its buffer passes the hard bound; others carry on', async () => {
      const { reader, friend, bystander, client } = await pausedReader(transport, srv);
      const started = Date.now();
      const { maxSeen, syncs } = await pileUp(srv, client, reader.uin, () => false);
      // Gone long before the stall time could have ended it, and never held much past the bound: the check runs
      // after each flush, and one flush adds at most one answer (≤ maxPacketBytes) to a buffer under the bound
      // (a poll may also see one answer queued for the next flush).
      assert.equal(connOf(srv, reader.uin), undefined, 'the reader was dropped');
      assert.ok(Date.now() - started < srv.config.outboundStallMs);
      assert.ok(maxSeen <= srv.config.outboundHardBytes + srv.config.maxPacketBytes, `seen ${maxSeen} buffered before the drop`);
      assert.ok(syncs > 1, 'it took more than one answer');
      await assertBystanderWorks(srv, bystander, friend, reader);
      // The reader reads again: what the kernel held, then the end of the connection.
      client.resume();
      await client.waitClosed();
      assert.equal(client.received.filter((p) => p.op === OP.ERROR).length, 0, 'past the hard bound not even ERROR is queued');
      bystander.close();
    });
  });

  describe(`${transport}: outbound stall and the NOTIFY owed on drain`, () => {
    const STALL_MS = 1500;
    let srv: TestServer;
    before(async () => {
      // A hard bound the test never reaches, so only the stall time can drop the connection.
      srv = await startServer({ sqliteSynchronous: 'OFF', outboundBufferBytes: SOFT, outboundHardBytes: 256 * 1024 * 1024, outboundStallMs: STALL_MS });
    });
    after(async () => {
      await srv.stop();
    });

    it('drops a connection that stays above the soft bound for the stall time, not before; others carry on', async () => {
      const { reader, friend, bystander, client } = await pausedReader(transport, srv);
      const { maxSeen } = await pileUp(srv, client, reader.uin, (row) => row.bufferedBytes > SOFT);
      const overAt = Date.now();
      assert.ok(maxSeen > SOFT && maxSeen < srv.config.outboundHardBytes, `seen ${maxSeen}`);
      // Half the stall time later it is still there (above the soft bound is allowed for a while). The deadline
      // was set by the flush that went over, at most one poll (40 ms) before it was seen; a late timer here is
      // allowed for.
      await new Promise((r) => setTimeout(r, STALL_MS / 2));
      const isOpen = connOf(srv, reader.uin) !== undefined;
      const elapsed = Date.now() - overAt;
      assert.ok(isOpen || elapsed >= STALL_MS - 100, `dropped ${elapsed} ms after going over, before the stall time`);
      await waitUntil(() => connOf(srv, reader.uin) === undefined, 'the stalled reader is dropped');
      await assertBystanderWorks(srv, bystander, friend, reader);
      client.resume();
      await client.waitClosed();
      bystander.close();
    });

    it('above the soft bound owes news as one NOTIFY, sent once the reader drains the link; no PUSH; a sync then gets it once', async () => {
      const { reader, friend, bystander, client } = await pausedReader(transport, srv);
      const { syncs } = await pileUp(srv, client, reader.uin, (row) => row.bufferedBytes > SOFT);
      const before = connOf(srv, reader.uin)!;
      const keyAfterSyncs = before.head;
      // News while the buffer is over the bound: neither PUSH nor NOTIFY may be queued.
      const news: string[] = [];
      for (let i = 0; i < 5; i++) {
        const m = text(reader.username, `news ${i}`);
        assert.equal((await api(srv.url, '/api/sendmsg', m, friend.sid)).body.ret, 0);
        news.push(m.clientMsgId);
      }
      const row = connOf(srv, reader.uin)!;
      assert.ok(row, 'still open (well within the stall time)');
      assert.equal(row.head, keyAfterSyncs + 5);
      assert.equal(row.key, keyAfterSyncs, 'nothing pushed past the key');
      // Nothing queued at all: the NOTIFY waits for the drain (the paused peer's kernel buffers are full).
      assert.equal(row.bufferedBytes, before.bufferedBytes);
      client.resume();
      const notify = await client.nextOp(OP.NOTIFY);
      assert.equal(notify.body.syncKey, keyAfterSyncs + 5);
      // Every SYNC answer came before the NOTIFY, and nothing was pushed.
      const ops = client.received.map((p) => p.op);
      assert.equal(ops.filter((op) => op === OP.SYNC_RESP).length, syncs);
      assert.equal(ops.lastIndexOf(OP.SYNC_RESP) < ops.indexOf(OP.NOTIFY), true);
      assert.equal(ops.filter((op) => op === OP.PUSH).length, 0);
      const page = await client.request(OP.SYNC, { syncKey: keyAfterSyncs });
      assert.equal(page.body.ret, 0);
      assert.deepEqual(
        page.body.entries.map((e: any) => e.clientMsgId),
        news,
      );
      assert.equal(page.body.syncKey, keyAfterSyncs + 5);
      // The sync answered everything: no second NOTIFY follows.
      await client.request(OP.HEARTBEAT);
      assert.equal(client.received.filter((p) => p.op === OP.NOTIFY).length, 1);
      client.close();
      bystander.close();
    });
  });
}
