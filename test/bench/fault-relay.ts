/**
 * A fault-injecting TCP relay for load-tool tests: it sits between simulated devices and a real server's TCP
 * gateway, passes the client's bytes through untouched, decodes the server's packets and, for one chosen message
 * on its way to a device of a user it was sent to (an entry whose `peer` is its sender: the recipient's copy of
 * a direct message), can
 *
 * - `drop`: remove it from every packet to that device (PUSH and SYNC pages): the device never gets it;
 * - `dropPush`: drop the PUSH carrying it once (the device sees the gap at the next PUSH and syncs it);
 * - `duplicate`: send the PUSH carrying it twice;
 * - `repush`: after it was delivered, push it again in a packet of its own just before the next PUSH.
 */
import net from 'node:net';
import { FrameDecoder, OP, encodePacket, parseBody } from '../../src/protocol/index.ts';

/** Which fault, on which message (by clientMsgId). */
export interface Fault {
  kind: 'drop' | 'dropPush' | 'duplicate' | 'repush';
  clientMsgId: string;
}

/** A running relay. */
export interface FaultRelay {
  port: number;
  /** Arms a fault for the next matching message; `applied()` says whether it fired. */
  arm(fault: Fault | undefined): void;
  applied(): boolean;
  /** Message entries the armed fault sent a second time (a doubled PUSH may carry more than the chosen one). */
  copiesAdded(): number;
  close(): Promise<void>;
}

interface ArmedFault extends Fault {
  /** The connection it fired on (drop keeps stripping there). */
  on?: object;
  /** repush: the entry to push again before the next PUSH on `on`. */
  pending?: any;
  isDone: boolean;
  copiesAdded: number;
}

/** Starts a relay on 127.0.0.1 (ephemeral port) to `upstreamPort`. */
export async function startFaultRelay(upstreamPort: number): Promise<FaultRelay> {
  let fault: ArmedFault | undefined;
  const sockets = new Set<net.Socket>();
  const isTarget = (e: any) => fault !== undefined && e?.kind === 'msg' && e.clientMsgId === fault.clientMsgId && e.peer === e.from;

  /** The packets to forward for one server packet. */
  function rewrite(conn: object, op: number, seq: number, body: any, raw: Uint8Array): Uint8Array[] {
    const original = encodePacket(op, seq, raw.slice());
    if (!fault || (op !== OP.PUSH && op !== OP.SYNC_RESP) || !Array.isArray(body?.entries)) return [original];
    const out: Uint8Array[] = [];
    if (fault.kind === 'repush' && fault.pending && fault.on === conn && op === OP.PUSH) {
      out.push(encodePacket(OP.PUSH, 0, { entries: [fault.pending], syncKey: fault.pending.seq }));
      fault.pending = undefined;
      fault.isDone = true;
      fault.copiesAdded = 1;
    }
    const hit = body.entries.find(isTarget);
    if (!hit || (fault.on && fault.on !== conn)) return [...out, original];
    switch (fault.kind) {
      case 'drop': {
        fault.on = conn;
        fault.isDone = true;
        const rest = body.entries.filter((e: any) => !isTarget(e));
        if (op === OP.PUSH && rest.length === 0) return out;
        return [...out, encodePacket(op, seq, { ...body, entries: rest })];
      }
      case 'dropPush':
        if (op !== OP.PUSH || fault.isDone) return [...out, original];
        fault.on = conn;
        fault.isDone = true;
        return out;
      case 'duplicate':
        if (op !== OP.PUSH || fault.isDone) return [...out, original];
        fault.on = conn;
        fault.isDone = true;
        fault.copiesAdded = body.entries.filter((e: any) => e?.kind === 'msg').length;
        return [...out, original, original];
      case 'repush':
        if (op !== OP.PUSH || fault.on) return [...out, original];
        fault.on = conn;
        fault.pending = hit;
        return [...out, original];
    }
  }

  const server = net.createServer((client) => {
    const conn = {};
    const upstream = net.connect({ host: '127.0.0.1', port: upstreamPort });
    sockets.add(client).add(upstream);
    const decoder = new FrameDecoder();
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => {
      const { packets, error } = decoder.push(chunk);
      for (const p of packets) {
        let body: any;
        try {
          body = parseBody(p.body);
        } catch {
          body = undefined;
        }
        for (const packet of rewrite(conn, p.op, p.seq, body, p.body)) client.write(packet);
      }
      if (error) client.destroy();
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    arm(f) {
      fault = f ? { ...f, isDone: false, copiesAdded: 0 } : undefined;
    },
    applied: () => fault?.isDone ?? false,
    copiesAdded: () => fault?.copiesAdded ?? 0,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
