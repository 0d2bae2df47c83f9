/**
 * One client process of the conn-memory benchmark: opens `count` long connections (raw TCP or WebSocket) from
 * several loopback source addresses, AUTHs each with one of the given sids, reports to its parent over IPC, then
 * holds them idle until the parent says `exit` (or goes away). A process holds at most ~18,000 sockets here.
 *
 *   forked by bench/scenarios/conn-memory.ts with one JSON argument: ClientJob
 */
import { connect } from 'node:net';
import WebSocket from 'ws';
import { OP, encodePacket } from '../../src/protocol/index.ts';

/** What one client process does. */
export interface ClientJob {
  transport: 'tcp' | 'ws';
  host: string;
  tcpPort: number;
  httpPort: number;
  sids: string[];
  /** The key each sid's device holds (same order), sent in AUTH so the server can PUSH; none: NOTIFY only. */
  keys?: number[];
  count: number;
  /** Source addresses (127.0.0.x) to spread connections over: one address has ~28k ports per destination. */
  sources: string[];
  /** Connections in flight (connecting or awaiting AUTH_OK) at once. */
  concurrency: number;
  /** Offset of this process's first connection, to spread sids and sources across processes. */
  offset: number;
  /** Stop reading after AUTH_OK: a slow reader that never reads what the server sends. */
  isSlowReader?: boolean;
}

/** What it reports. */
export interface ClientReport {
  t: 'ready';
  ok: number;
  failed: number;
  firstError: string;
  elapsedMs: number;
}

const job = JSON.parse(process.argv[2]!) as ClientJob;
const held: { close(): void }[] = [];
let ok = 0;
let failed = 0;
let started = 0;
let firstError = '';
const t0 = Date.now();

/** The op of the first packet in `buf`, or -1 while fewer than 16 bytes arrived. */
function firstOp(buf: Buffer): number {
  return buf.length >= 16 ? buf.readUInt32BE(8) : -1;
}

function settle(isOk: boolean, err?: string): void {
  if (isOk) ok++;
  else {
    failed++;
    if (!firstError && err) firstError = err;
  }
  if (ok + failed === job.count) {
    const report: ClientReport = { t: 'ready', ok, failed, firstError, elapsedMs: Date.now() - t0 };
    process.send!(report);
  } else next();
}

function openTcp(i: number): void {
  const sid = job.sids[i % job.sids.length]!;
  const auth = job.keys ? { sid, syncKey: job.keys[i % job.sids.length]! } : { sid };
  const socket = connect({ host: job.host, port: job.tcpPort, localAddress: job.sources[i % job.sources.length]! });
  let buf = Buffer.alloc(0);
  let isDone = false;
  socket.setNoDelay(true);
  socket.once('connect', () => socket.write(encodePacket(OP.AUTH, 1, auth)));
  socket.on('data', (chunk) => {
    if (isDone) return;
    buf = Buffer.concat([buf, chunk]);
    const op = firstOp(buf);
    if (op < 0) return;
    isDone = true;
    buf = Buffer.alloc(0);
    if (job.isSlowReader) socket.pause();
    settle(op === OP.AUTH_OK, `op ${op}`);
  });
  socket.on('error', (err) => {
    if (!isDone) {
      isDone = true;
      settle(false, err.message);
    }
  });
  held.push({ close: () => socket.destroy() });
}

function openWs(i: number): void {
  const sid = job.sids[i % job.sids.length]!;
  const auth = job.keys ? { sid, syncKey: job.keys[i % job.sids.length]! } : { sid };
  const ws = new WebSocket(`ws://${job.host}:${job.httpPort}/ws`, { localAddress: job.sources[i % job.sources.length]!, perMessageDeflate: false });
  let isDone = false;
  ws.once('open', () => ws.send(encodePacket(OP.AUTH, 1, auth)));
  ws.on('message', (data: Buffer) => {
    if (isDone) return;
    isDone = true;
    if (job.isSlowReader) ws.pause();
    settle(firstOp(data) === OP.AUTH_OK, `op ${firstOp(data)}`);
  });
  ws.on('error', (err) => {
    if (!isDone) {
      isDone = true;
      settle(false, err.message);
    }
  });
  held.push({ close: () => ws.terminate() });
}

function next(): void {
  while (started < job.count && started - ok - failed < job.concurrency) {
    const i = job.offset + started++;
    if (job.transport === 'tcp') openTcp(i);
    else openWs(i);
  }
}

process.on('message', (m: any) => {
  if (m === 'exit') {
    for (const h of held) h.close();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
next();
