/**
 * One simulated device for the load tool: it holds a long connection through the SDK's wire code
 * (`WireConnection` from src/sdk/wire.ts over the SDK's WebSocket link or the load tool's TCP link,
 * tcp-read-link.ts, bound to a chosen 127.0.0.x source address) or a long-poll loop over HTTP, authenticates with an existing session, heartbeats (the SDK's shared
 * ticker), sends, and keeps its SyncKey as the real client does: it applies a PUSH that directly follows its key
 * and acknowledges it, answers a NOTIFY (or a gap) with SYNC until `continueFlag` is false and it has reached the
 * announced head, and skips entries at or below its key.
 *
 * What it sees goes to a {@link DeviceObserver} twice: every message entry as it comes off the wire (PUSH or SYNC
 * page, before anything is filtered by key, classified as a {@link WireCopy}), and every message entry it applies
 * (once per log position). Duplicates are counted from the first; latency from the second.
 */
import http from 'node:http';
import WebSocket from 'ws';
import { OP, type Entry, type MsgEntry } from '../../src/protocol/index.ts';
import { WireConnection, type ByteLinkHandler, type Connector, type NotifyBody, type PushBody, type WireHandler } from '../../src/sdk/wire.ts';
import { webSocketConnector, type WebSocketConstructor } from '../../src/sdk/ws-link.ts';
import { tcpConnector } from '../../src/sdk/node/index.ts';
import { WireCopy } from './reconcile.ts';

/** How a simulated device reaches the server. */
export type Transport = 'tcp' | 'ws' | 'longpoll';

/** Where the server listens. */
export interface Endpoint {
  httpUrl: string;
  tcpHost: string;
  tcpPort: number;
  wsUrl: string;
}

/** The AUTH_OK body. */
export type { AuthOk } from '../../src/sdk/wire.ts';
import type { AuthOk } from '../../src/sdk/wire.ts';

const longpollAgents = new Map<string, http.Agent>();
function agentFor(localAddress: string): http.Agent {
  let a = longpollAgents.get(localAddress);
  if (!a) {
    a = new http.Agent({ keepAlive: true, maxSockets: Infinity, localAddress } as http.AgentOptions);
    longpollAgents.set(localAddress, a);
  }
  return a;
}

/** POST/GET JSON (an object, or a string already serialised) over a given agent; resolves with the parsed body and its size in bytes. */
function httpJson(agent: http.Agent, base: string, path: string, sid: string, body?: unknown, onRequest?: (req: http.ClientRequest) => void): Promise<any> {
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      new URL(path, base),
      {
        method: payload === undefined ? 'GET' : 'POST',
        agent,
        headers: { authorization: `Bearer ${sid}`, ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          try {
            const buf = Buffer.concat(chunks);
            resolve({ body: JSON.parse(buf.toString('utf8')), bytes: buf.length });
          } catch (err) {
            reject(err as Error);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    onRequest?.(req);
    req.end(payload);
  });
}

/** Connectors per (transport, source address); each counts the bytes it receives into the device's record. */
const connectors = new Map<string, Connector>();
function connectorFor(transport: 'tcp' | 'ws', localAddress: string): Connector {
  const key = `${transport}/${localAddress}`;
  let c = connectors.get(key);
  if (!c) {
    if (transport === 'tcp') c = tcpConnector({ localAddress, isSharedReadBuffer: true });
    else {
      class BoundWebSocket extends WebSocket {
        constructor(url: string) {
          super(url, { localAddress, perMessageDeflate: false });
        }
      }
      c = webSocketConnector(BoundWebSocket as unknown as WebSocketConstructor);
    }
    connectors.set(key, c);
  }
  return c;
}

/** Shared by every wire connection of the process: routes to the SimConn kept in `tag`. */
const HANDLER: WireHandler = {
  onPush: (wire, body) => (wire.tag as SimConn).onPush(body),
  onNotify: (wire, body) => (wire.tag as SimConn).onNotify(body),
  onServerError: (wire) => wire.close('server error'),
  onClose: (wire) => (wire.tag as SimConn).onWireClose(wire),
};

/** Receives what simulated devices see; one object serves every device of a process. */
export interface DeviceObserver {
  /** A message entry came off the wire (PUSH or SYNC page), before the device filtered anything by key. */
  onWireMsg(conn: SimConn, entry: MsgEntry, copy: WireCopy): void;
  /** The device applied a message entry (once per log position, in order). */
  onAppliedMsg(conn: SimConn, entry: MsgEntry): void;
}

/** A simulated device. */
export class SimConn {
  /** The device's SyncKey: it holds every entry up to here. */
  syncKey: number;
  /** The highest head the server announced (AUTH_OK, NOTIFY, PUSH). */
  knownHead = 0;
  isOpen = false;
  /** Bytes received (packet bytes; JSON bodies for long-poll). */
  bytesIn = 0;
  #wire: WireConnection | undefined;
  #syncing = false;
  #closed = false;
  #pollReq: http.ClientRequest | undefined;
  #onCurrent: (() => void)[] = [];
  /** The highest seq that came off the wire to this device, over all its connections. */
  #wireMaxSeq = 0;
  /** The highest seq this connection delivered or was told the device holds (the AUTH key). */
  #connMaxSeq = 0;

  constructor(
    readonly id: number,
    readonly username: string,
    readonly sid: string,
    readonly transport: Transport,
    readonly endpoint: Endpoint,
    readonly localAddress: string,
    readonly observer: DeviceObserver,
    syncKey = 0,
  ) {
    this.syncKey = syncKey;
    this.#wireMaxSeq = syncKey;
  }

  /** Connects and authenticates; resolves with AUTH_OK (long-poll: a synthetic one from a first synccheck). */
  async connect(timeoutMs = 30_000): Promise<AuthOk> {
    this.#closed = false;
    if (this.transport === 'longpoll') return this.#startLongpoll();
    const wire = new WireConnection(HANDLER, { connectTimeoutMs: timeoutMs, requestTimeoutMs: 60_000 });
    wire.tag = this;
    this.#wire = wire;
    const inner = connectorFor(this.transport, this.localAddress);
    const url = this.transport === 'tcp' ? `tcp://${this.endpoint.tcpHost}:${this.endpoint.tcpPort}` : this.endpoint.wsUrl;
    await wire.open((u, handler) => inner.connect(u, this.#counting(handler)), url);
    this.isOpen = true;
    // Entries after the key presented in AUTH are owed on this connection, even if an earlier one carried them.
    this.#connMaxSeq = this.syncKey;
    const ok = await wire.auth(this.sid, this.syncKey);
    if (ok.ret !== 0) {
      wire.close('auth refused');
      throw new Error(`AUTH refused: ret ${ok.ret} ${ok.errMsg ?? ''}`);
    }
    this.#noteHead(ok.syncKey);
    if (ok.syncKey > this.syncKey) void this.#sync();
    return ok;
  }

  /** Sends a message; resolves with SEND_ACK's body (`ret` included). */
  send(body: { clientMsgId: string; to: string; type: number; content: string }): Promise<any> {
    if (this.transport === 'longpoll') return httpJson(agentFor(this.localAddress), this.endpoint.httpUrl, '/api/sendmsg', this.sid, body).then((r) => r.body);
    if (!this.#wire) return Promise.reject(new Error('not connected'));
    return this.#wire.send(body);
  }

  /**
   * Sends a message whose `/api/sendmsg` body is already JSON text (ASCII): the load tool's hot path builds it
   * from a per-sender prefix, skipping JSON.stringify and the UTF-8 encoder. Same packet as {@link send}.
   */
  sendJson(json: string): Promise<any> {
    if (this.transport === 'longpoll') return httpJson(agentFor(this.localAddress), this.endpoint.httpUrl, '/api/sendmsg', this.sid, json).then((r) => r.body);
    if (!this.#wire) return Promise.reject(new Error('not connected'));
    // encodePacket takes bytes as they are; `request` is typed for objects, which a Uint8Array is.
    return this.#wire.request(OP.SEND, Buffer.from(json, 'latin1'));
  }

  /** Resolves once the device's key has reached `head`. */
  whenCurrent(head: number): Promise<void> {
    if (this.syncKey >= head) return Promise.resolve();
    return new Promise((resolve) => {
      const f = () => {
        if (this.syncKey >= head) resolve();
        else this.#onCurrent.push(f);
      };
      this.#onCurrent.push(f);
    });
  }

  /** Drops the connection at once, as a crashed network would (no close handshake). */
  destroy(): void {
    this.#closed = true;
    this.isOpen = false;
    this.#wire?.close('dropped by the load tool');
    this.#pollReq?.destroy();
  }

  /** @internal from the wire handler. */
  onPush(body: PushBody): void {
    // A PUSH is never an answer: an entry at or below what this connection already carried is a repeat nobody asked for.
    this.#observe(body.entries, this.#connMaxSeq);
    this.#noteHead(body.syncKey);
    const first = body.entries[0];
    if (this.#syncing) return; // the running SYNC loop fetches up to the announced head
    if (first && first.seq > this.syncKey + 1) {
      // A gap: fetch the delta instead (PROTOCOL.md: PUSH only when it directly follows the device's key).
      void this.#sync();
      return;
    }
    this.#apply(body.entries, body.syncKey);
    this.#wire?.ack(this.syncKey);
  }

  /** @internal from the wire handler. */
  onNotify(body: NotifyBody): void {
    this.#noteHead(body.syncKey);
    void this.#sync();
  }

  /** @internal from the wire handler. */
  onWireClose(wire: WireConnection): void {
    if (wire === this.#wire) this.isOpen = false;
  }

  #counting(handler: ByteLinkHandler): ByteLinkHandler {
    return {
      onLinkOpen: () => handler.onLinkOpen(),
      onLinkData: (chunk) => {
        this.bytesIn += chunk.length;
        handler.onLinkData(chunk);
      },
      onLinkClose: (reason) => handler.onLinkClose(reason),
    };
  }

  /**
   * Reports each message entry of a PUSH or SYNC page to the observer before anything is filtered, classified by
   * seq: above every seq this device got on the wire → NEW; otherwise a repeat, asked for when it lies above
   * `askedAbove` (the key a SYNC presented; for a PUSH, what the connection already carried) and above the entry
   * before it in the same packet, else UNASKED_AGAIN.
   */
  #observe(entries: readonly Entry[] | undefined, askedAbove: number): void {
    if (!Array.isArray(entries)) return;
    let prev = -1;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const seq = e.seq;
      const copy = seq > this.#wireMaxSeq ? WireCopy.NEW : seq > askedAbove && seq > prev ? WireCopy.ASKED_AGAIN : WireCopy.UNASKED_AGAIN;
      if (seq > this.#wireMaxSeq) this.#wireMaxSeq = seq;
      if (seq > this.#connMaxSeq) this.#connMaxSeq = seq;
      if (seq > prev) prev = seq;
      if (e.kind === 'msg') this.observer.onWireMsg(this, e, copy);
    }
  }

  #apply(entries: readonly any[], newKey: number): void {
    for (const e of entries) {
      if (e.seq <= this.syncKey) continue;
      this.syncKey = e.seq;
      if (e.kind === 'msg') this.observer.onAppliedMsg(this, e as MsgEntry);
    }
    if (newKey > this.syncKey) this.syncKey = newKey;
    if (this.#onCurrent.length) {
      const waiting = this.#onCurrent;
      this.#onCurrent = [];
      for (const f of waiting) f();
    }
  }

  #noteHead(head: number | undefined): void {
    if (typeof head === 'number' && head > this.knownHead) this.knownHead = head;
  }

  async #sync(): Promise<void> {
    if (this.#syncing) return;
    this.#syncing = true;
    try {
      for (;;) {
        let r: any;
        const askedKey = this.syncKey;
        if (this.transport === 'longpoll') {
          r = await httpJson(agentFor(this.localAddress), this.endpoint.httpUrl, '/api/sync', this.sid, { syncKey: askedKey, limit: 1000 });
          this.bytesIn += r.bytes;
          r = r.body;
        } else {
          if (!this.#wire) break;
          r = await this.#wire.sync(askedKey, 1000);
        }
        if (r.ret !== 0) break;
        this.#observe(r.entries, askedKey);
        this.#apply(r.entries, r.syncKey);
        if (!r.continueFlag && this.syncKey >= this.knownHead) break;
        if (this.#closed) break;
      }
      if (this.transport !== 'longpoll') this.#wire?.ack(this.syncKey);
    } catch {
      // connection dropped mid-sync: the next connect resyncs from the key
    } finally {
      this.#syncing = false;
    }
  }

  async #startLongpoll(): Promise<AuthOk> {
    const agent = agentFor(this.localAddress);
    // The first synccheck answers at once; it doubles as the "AUTH" of a long-poll device.
    const first = (await httpJson(agent, this.endpoint.httpUrl, `/api/synccheck?syncKey=${this.syncKey}&timeout=1`, this.sid)).body;
    if (first.ret !== 0) throw new Error(`synccheck refused: ret ${first.ret} ${first.errMsg ?? ''}`);
    this.isOpen = true;
    this.#noteHead(first.syncKey);
    void this.#pollLoop(agent);
    return { ret: 0, uin: 0, syncKey: first.syncKey, epoch: first.epoch, heartbeatMs: 0 };
  }

  async #pollLoop(agent: http.Agent): Promise<void> {
    while (!this.#closed) {
      try {
        if (this.knownHead > this.syncKey) await this.#sync();
        const { body: r, bytes } = await httpJson(agent, this.endpoint.httpUrl, `/api/synccheck?syncKey=${this.syncKey}&timeout=25000`, this.sid, undefined, (req) => (this.#pollReq = req));
        this.bytesIn += bytes;
        if (r.ret !== 0) {
          await new Promise((res) => setTimeout(res, 1000));
          continue;
        }
        this.#noteHead(r.syncKey);
        if (r.selector !== 0) await this.#sync();
      } catch {
        if (this.#closed) return;
        await new Promise((res) => setTimeout(res, 200));
      }
    }
  }
}
