/**
 * What a heartbeat costs the server (BENCHMARKS.md "Issue 13"): N authenticated TCP connections (SDK
 * WireConnections, one session each) held against a one-process server, first quiet (heartbeat period 5 min, so
 * none falls in the window), then heartbeating every `--period-ms` (1 s); the server's CPU (user + system, /proc) over each
 * window, less the quiet one, divided by the heartbeats answered, is the CPU of one heartbeat. From it, the cost of
 * a connection at the seed's periods (27 s web, 300 s mobile).
 *
 *   npx tsx bench/probes/heartbeat-cost.ts [--connections 4000] [--devices 20] [--seconds 20] [--rounds 2] [--json FILE]
 *
 * The record (scenario `heartbeat-cost`) gives `npm run capacity` its CPU per heartbeat (bench/capacity.ts fitCosts).
 */
import { WireConnection, type WireHandler } from '../../src/sdk/index.ts';
import { tcpConnector } from '../../src/sdk/node/index.ts';
import { cpuSeconds, parseArgs, spawnServer } from '../lib/proc.ts';
import { writeResult } from '../lib/result.ts';
import { pooled, registerUsers, runTag } from '../lib/setup.ts';

const o = parseArgs(process.argv.slice(2), { connections: '4000', devices: '20', seconds: '20', rounds: '2', 'period-ms': '1000', json: '' });
const periodMs = Number(o['period-ms']);
const connections = Number(o.connections);
const devices = Number(o.devices);
const windowMs = Number(o.seconds) * 1000;

let acks = 0;
/** Why connections closed during the run (a loaded machine can starve a 2 s liveness check): reason → count. */
const closes = new Map<string, number>();
const handler: WireHandler = {
  onPush() {},
  onNotify() {},
  onServerError() {},
  onClose(_c, reason) {
    closes.set(reason, (closes.get(reason) ?? 0) + 1);
  },
  onHeartbeatAck() {
    acks++;
  },
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  // One process, so one pid holds all of the server's CPU; the range lets a connection agree 1 s and 5 min.
  const server = await spawnServer({ SYNCHAT_WORKERS: '0', SYNCHAT_HEARTBEAT_MIN_MS: '1000', SYNCHAT_HEARTBEAT_MAX_MS: '300000' });
  try {
    const names = Array.from({ length: Math.ceil(connections / devices) }, (_, i) => `hb${runTag()}_${i}`);
    const users = await registerUsers(server.url, names, devices);
    const sids = users.flatMap((u) => u.sids).slice(0, connections);
    const connector = tcpConnector();
    const url = `tcp://127.0.0.1:${server.tcpPort}`;
    const conns: WireConnection[] = [];
    await pooled(sids, 100, async (sid) => {
      // A late HEARTBEAT_ACK on a loaded machine is not a dead link here: the window needs every connection.
      const c = new WireConnection(handler, { heartbeatAckTimeoutMs: 60_000 });
      await c.open(connector.connect, url);
      const ok = await c.auth(sid, undefined, 300_000);
      if (ok.ret !== 0 || ok.heartbeatMs !== 300_000) throw new Error(`AUTH: ${JSON.stringify(ok)}`);
      conns.push(c);
    });
    const results: { quietCoreSec: number; busyCoreSec: number; heartbeats: number; openAtEnd: number; usPerHeartbeat: number }[] = [];
    for (let round = 0; round < Number(o.rounds); round++) {
      for (const c of conns) c.heartbeatIntervalMs = 300_000;
      await sleep(2_000);
      const q0 = cpuSeconds(server.pid);
      await sleep(windowMs);
      const quiet = cpuSeconds(server.pid) - q0;
      for (const c of conns) c.heartbeatIntervalMs = periodMs;
      await sleep(2_000);
      const a0 = acks;
      const b0 = cpuSeconds(server.pid);
      await sleep(windowMs);
      const busy = cpuSeconds(server.pid) - b0;
      const heartbeats = acks - a0;
      const openAtEnd = conns.filter((c) => c.isAuthed).length;
      results.push({ quietCoreSec: quiet, busyCoreSec: busy, heartbeats, openAtEnd, usPerHeartbeat: ((busy - quiet) / heartbeats) * 1e6 });
    }
    const open = conns.filter((c) => c.isAuthed).length;
    const closedDuringRun = Object.fromEntries(closes);
    for (const c of conns) c.close();
    // Only rounds that kept every connection count: a round that lost some measured fewer, and a closing storm.
    const us = results.filter((r) => r.openAtEnd === conns.length && r.heartbeats > 0).map((r) => r.usPerHeartbeat);
    if (us.length === 0) throw new Error(`no round kept its ${conns.length} connections: ${JSON.stringify({ results, closes: Object.fromEntries(closes) })}`);
    const perConn = (periodSec: number, u: number) => ({
      periodSec,
      coreUsPerConnSec: +(u / periodSec).toFixed(3),
      coresPerMillionConns: +((1e6 * u * 1e-6) / periodSec).toFixed(3),
      heartbeatsPerSecPerMillion: Math.round(1e6 / periodSec),
      bitsPerSecPerMillion: Math.round((1e6 / periodSec) * 32 * 8),
    });
    const median = [...us].sort((a, b) => a - b)[Math.floor(us.length / 2)]!;
    const result = {
      connections: conns.length,
      stillOpen: open,
      periodMs,
      closes: closedDuringRun,
      windowSec: windowMs / 1000,
      rounds: results.map((r) => ({ ...r, quietCoreSec: +r.quietCoreSec.toFixed(2), busyCoreSec: +r.busyCoreSec.toFixed(2), usPerHeartbeat: +r.usPerHeartbeat.toFixed(2) })),
      usPerHeartbeatMedian: +median.toFixed(2),
      at: [perConn(27, median), perConn(300, median)],
    };
    console.log(JSON.stringify(result, null, 2));
    writeResult(o.json || undefined, 'heartbeat-cost', o, { ...result, command: `npx tsx bench/probes/heartbeat-cost.ts ${process.argv.slice(2).join(' ')}` });
  } finally {
    await server.stop();
  }
}

await main();
