// Heartbeat negotiation on the long connection (docs/protocol.md "Heartbeat"), over raw TCP and WebSocket against a
// live server: AUTH may propose heartbeatMs, the server clamps it to [heartbeatMinMs, heartbeatMaxMs], answers the
// agreed value in AUTH_OK and closes an idle connection after 2.5 × that value.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OP } from '../../src/protocol/index.ts';
import { ConfigError, loadConfig } from '../../src/server/config.ts';
import { agreeHeartbeatMs } from '../../src/transports/conn/connection.ts';
import type { Connections } from '../../src/transports/conn/connections.ts';
import { startServer, userDevice, type TestServer } from '../helpers/server.ts';
import { TRANSPORTS, connectWire } from '../helpers/wire.ts';

const LIMITS = { heartbeatMs: 30_000, heartbeatMinMs: 20_000, heartbeatMaxMs: 300_000 };

describe('agreeHeartbeatMs', () => {
  it('takes a proposal inside the range as it is and clamps one outside it', () => {
    assert.equal(agreeHeartbeatMs(27_000, LIMITS), 27_000);
    assert.equal(agreeHeartbeatMs(300_000, LIMITS), 300_000);
    assert.equal(agreeHeartbeatMs(1, LIMITS), 20_000);
    assert.equal(agreeHeartbeatMs(Number.MAX_SAFE_INTEGER, LIMITS), 300_000);
  });

  it("answers the server's heartbeatMs when the client proposes none", () => {
    assert.equal(agreeHeartbeatMs(undefined, LIMITS), 30_000);
  });

  it('refuses what is not a positive whole number of ms', () => {
    for (const bad of [0, -1, 1.5, '27000', null, NaN, Infinity, 2 ** 60, {}, []]) {
      assert.equal(typeof agreeHeartbeatMs(bad, LIMITS), 'string', `refuses ${JSON.stringify(bad)}`);
    }
  });
});

describe('heartbeat settings', () => {
  it('defaults to 30 s agreed within 20 s – 5 min', () => {
    const c = loadConfig({});
    assert.deepEqual([c.heartbeatMinMs, c.heartbeatMs, c.heartbeatMaxMs], [20_000, 30_000, 300_000]);
  });

  it('refuses a default outside the range, naming the variables', () => {
    assert.throws(() => loadConfig({ SYNCHAT_HEARTBEAT_MS: '10000' }), (e: Error) => e instanceof ConfigError && /SYNCHAT_HEARTBEAT_MS.*SYNCHAT_HEARTBEAT_MIN_MS/.test(e.message));
    assert.throws(() => loadConfig({ SYNCHAT_HEARTBEAT_MIN_MS: '60000', SYNCHAT_HEARTBEAT_MAX_MS: '40000' }), ConfigError);
    assert.equal(loadConfig({ SYNCHAT_HEARTBEAT_MS: '27000', SYNCHAT_HEARTBEAT_MIN_MS: '27000', SYNCHAT_HEARTBEAT_MAX_MS: '27000' }).heartbeatMs, 27_000);
  });
});

for (const transport of TRANSPORTS) {
  describe(`${transport}: heartbeat negotiation`, () => {
    let srv: TestServer;
    before(async () => {
      // A small range so that the idle close of an agreed period shows within seconds.
      srv = await startServer({ heartbeatMinMs: 1_000, heartbeatMs: 4_000, heartbeatMaxMs: 8_000 });
    });
    after(async () => {
      await srv.stop();
    });

    async function auth(name: string, body: Record<string, unknown>) {
      const d = await userDevice(srv.url, `${name}_${transport}`);
      const client = await connectWire(transport, srv);
      const r = await client.request(OP.AUTH, { sid: d.sid, ...body });
      return { client, r, uin: d.uin };
    }

    it('answers the agreed period in AUTH_OK: the proposal, clamped to the range, or the default', async () => {
      for (const [proposed, agreed] of [
        [2_500, 2_500],
        [10, 1_000],
        [86_400_000, 8_000],
        [undefined, 4_000],
      ] as const) {
        const { client, r, uin } = await auth(`hb_agree_${proposed}`, proposed === undefined ? {} : { heartbeatMs: proposed });
        assert.equal(r.op, OP.AUTH_OK);
        assert.equal(r.body.heartbeatMs, agreed, `proposed ${proposed}`);
        const conns = (srv.connections as Connections).connectionsOf(uin);
        assert.deepEqual(conns.map((c) => c.heartbeatMs), [agreed], 'the connection holds the agreed period');
        assert.ok((srv.connections.stats().byHeartbeatMs[agreed] ?? 0) >= 1, 'stats count it under its period');
        client.close();
      }
    });

    it('refuses a proposal that is not a positive integer with ERROR ret 1, then closes', async () => {
      for (const bad of ['27s', -5, 1.5, 0]) {
        const { client, r } = await auth(`hb_bad_${String(bad).replace(/\W/g, '')}`, { heartbeatMs: bad });
        assert.equal(r.op, OP.ERROR, `heartbeatMs ${JSON.stringify(bad)}`);
        assert.equal(r.body.ret, 1);
        assert.match(r.body.errMsg, /heartbeatMs must be a positive integer/);
        await client.waitClosed();
      }
    });

    it('closes an idle connection after 2.5 × its agreed period, not the default one', async () => {
      const { client, r } = await auth('hb_idle', { heartbeatMs: 1_000 });
      assert.equal(r.body.heartbeatMs, 1_000);
      await client.waitClosed();
      const last = client.received.at(-1)!;
      assert.equal(last.op, OP.ERROR);
      assert.equal(last.body.ret, 1);
      assert.match(last.body.errMsg, /no packet for 2500 ms/);
    });
  });
}
