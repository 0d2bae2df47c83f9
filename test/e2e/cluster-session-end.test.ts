// Ending a session over HTTP in the several-process server (SYNCHAT_WORKERS=2) reaches every gateway process:
// the session's TCP and WebSocket long connections get ERROR 1100 (logout) or 1101 (revoked) and close, and its
// parked long-poll answers the same, on whichever process holds them. Which process holds a socket is read from
// the kernel (`ss -tnp`: the owner of the server end), and connections are opened until both processes hold a TCP
// and a WebSocket connection of the session, so the HTTP call that ends it is certainly served by another process
// than some of them.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { OP } from '../../src/protocol/index.ts';
import { api, befriend, userDevice, type Device } from '../helpers/server.ts';
import { spawnGatewayServer, type GatewayServer } from '../helpers/process.ts';
import { waitUntil } from '../helpers/wait.ts';
import { TRANSPORTS, authedWire, type WireClient } from '../helpers/wire.ts';

/** Connections per transport a test may open before it gives up on reaching both processes. */
const MAX_PER_TRANSPORT = 40;

/** The pid of the process holding the server end of the connection from `clientPort` to `serverPort`. */
function serverPid(serverPort: number, clientPort: number): number | undefined {
  const out = execFileSync('ss', ['-Htnp', 'state', 'established', `( sport = :${serverPort} and dport = :${clientPort} )`], { encoding: 'utf8' });
  const m = /pid=(\d+)/.exec(out);
  return m ? Number(m[1]) : undefined;
}

describe('several gateway processes: ending a session over HTTP closes its connections on every process', () => {
  let server: GatewayServer;
  let ports: { httpPort: number; tcpPort: number };
  let friend: Device;
  const open: WireClient[] = [];

  before(async () => {
    server = await spawnGatewayServer('synchat-cluster-end-');
    ports = server.ports;
    friend = await userDevice(server.url, 'cse_friend');
  });
  after(async () => {
    for (const c of open) c.close();
    await server.stopAndClean();
  });

  /**
   * Long connections of `dev` on TCP and WebSocket until each transport has one on two processes; the extra ones
   * are kept too (they must end as well). Returns them with the pids holding them.
   */
  async function spreadConnections(dev: Device): Promise<{ conns: WireClient[]; pids: Set<number> }> {
    const conns: WireClient[] = [];
    const pids = new Set<number>();
    for (const transport of TRANSPORTS) {
      const serverPort = transport === 'tcp' ? ports.tcpPort : ports.httpPort;
      const seen = new Set<number>();
      for (let i = 0; seen.size < 2; i++) {
        assert.ok(i < MAX_PER_TRANSPORT, `${MAX_PER_TRANSPORT} ${transport} connections all landed on one process`);
        // AUTH without a key: nothing is acknowledged, so the parked poll's key is what shows in the device list.
        const { client } = await authedWire(transport, ports, dev.sid);
        open.push(client);
        conns.push(client);
        const pid = serverPid(serverPort, client.localPort);
        assert.ok(pid, `the server end of ${transport} connection ${client.localPort} has an owner`);
        seen.add(pid);
        pids.add(pid);
      }
    }
    assert.equal(pids.size, 2, 'two gateway processes');
    assert.ok(!pids.has(server.child.pid!), 'the primary holds no connection');
    return { conns, pids };
  }

  /** A synccheck of `dev` parked in some gateway: its key is recorded by the core (seen in the device list). */
  async function parkedPoll(dev: Device, deviceId: string, lister: Device): Promise<{ answer: Promise<any> }> {
    const poll = api(server.url, `/api/synccheck?syncKey=${dev.syncKey}&timeout=60000`, undefined, dev.sid).then((r) => r.body);
    await waitUntil(
      async () => {
        const sessions = (await api(server.url, '/api/sessions', {}, lister.sid)).body.sessions as any[];
        return sessions.some((s) => s.deviceId === deviceId && s.ackedKey === dev.syncKey);
      },
      'the poll is attached (its key shows in the device list)',
    );
    // Wrapped: an async function returning the promise itself would wait for the answer.
    return { answer: poll };
  }

  /**
   * A user with a friend (so the log has a key to present), a laptop session with long connections on both
   * processes and a parked poll, and a phone session.
   */
  async function laptopAndPhone(username: string) {
    const dev = await userDevice(server.url, username, 'laptop');
    await befriend(server.url, dev, friend);
    const phone = await userDevice(server.url, username, 'phone');
    dev.syncKey = phone.syncKey;
    const { conns } = await spreadConnections(dev);
    const { answer: poll } = await parkedPoll(dev, 'laptop', phone);
    return { dev, phone, conns, poll };
  }

  async function assertAllEnded(conns: WireClient[], ret: number): Promise<void> {
    for (const c of conns) {
      const err = await c.nextOp(OP.ERROR);
      assert.equal(err.body.ret, ret, `${c.transport} connection ${c.localPort}`);
      await c.waitClosed();
    }
  }

  it('logout: ERROR 1100 on every TCP and WebSocket connection of the session, and its parked poll answers 1100', async () => {
    const { dev, phone, conns, poll } = await laptopAndPhone('cse_ann');
    // The other device of the same user keeps its connection.
    const { client: other } = await authedWire('tcp', ports, phone.sid, phone.syncKey);
    open.push(other);
    assert.equal((await api(server.url, '/api/logout', {}, dev.sid)).body.ret, 0);
    await assertAllEnded(conns, 1100);
    assert.equal((await poll).ret, 1100);
    assert.equal((await other.request(OP.HEARTBEAT)).op, OP.HEARTBEAT_ACK);
    assert.equal(other.isClosed, false);
  });

  it('revoke: ERROR 1101 on every TCP and WebSocket connection of the revoked session, and its parked poll answers 1101', async () => {
    const { dev, phone, conns, poll } = await laptopAndPhone('cse_bob');
    const sessions = (await api(server.url, '/api/sessions', {}, phone.sid)).body.sessions as any[];
    const laptop = sessions.find((s) => s.deviceId === 'laptop');
    assert.equal((await api(server.url, '/api/sessions/revoke', { sessionId: laptop.sessionId }, phone.sid)).body.ret, 0);
    await assertAllEnded(conns, 1101);
    assert.equal((await poll).ret, 1101);
    assert.equal((await api(server.url, '/api/sync', { syncKey: 0 }, dev.sid)).body.ret, 1101);
  });
});
