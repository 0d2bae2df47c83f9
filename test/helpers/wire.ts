/**
 * A tiny raw client of the binary long connection, over node:net or ws, built on src/protocol/frame.ts: tests
 * drive the wire by hand against the real listeners (no SDK in between).
 */
import { connect, type Socket } from 'node:net';
import WebSocket from 'ws';
import { FrameDecoder, OP, encodePacket, parseBody } from '../../src/protocol/index.ts';

/** A decoded packet with its body parsed (undefined when empty). */
export interface WirePacket {
  op: number;
  seq: number;
  body: any;
}

/** Which listener to reach. */
export type WireTransport = 'tcp' | 'ws';

/** How long a wait may take before the test fails instead of hanging (not a timing assertion). */
const HANG_GUARD_MS = 15_000;

/** A connected raw client. */
export class WireClient {
  readonly transport: WireTransport;
  /** Every packet received, in order (including ones already taken by {@link WireClient.next}). */
  readonly received: WirePacket[] = [];
  #queue: WirePacket[] = [];
  #waiters: { match: (p: WirePacket) => boolean; resolve: (p: WirePacket) => void; reject: (e: Error) => void }[] = [];
  #seq = 0;
  #decoder = new FrameDecoder(64 * 1024 * 1024);
  readonly #write: (b: Uint8Array) => void;
  readonly #end: () => void;
  readonly #pause: () => void;
  readonly #resume: () => void;
  /** Resolves when the connection closes (either side). */
  readonly closed: Promise<void>;
  isClosed = false;
  /** The client socket's local port (which server process holds the other end: `ss`, in cluster tests). */
  localPort = 0;

  constructor(transport: WireTransport, io: { write(b: Uint8Array): void; end(): void; pause(): void; resume(): void }, closed: Promise<void>) {
    this.transport = transport;
    this.#write = io.write;
    this.#end = io.end;
    this.#pause = io.pause;
    this.#resume = io.resume;
    this.closed = closed.then(() => {
      this.isClosed = true;
      for (const w of this.#waiters.splice(0)) w.reject(new Error(`${this.transport}: connection closed`));
    });
  }

  /** @internal bytes from the socket. */
  onBytes(chunk: Uint8Array): void {
    const { packets, error } = this.#decoder.push(chunk);
    if (error) throw new Error(`server sent a bad frame: ${error.message}`);
    for (const p of packets) {
      const packet = { op: p.op, seq: p.seq, body: parseBody(p.body) };
      this.received.push(packet);
      const i = this.#waiters.findIndex((w) => w.match(packet));
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(packet);
      else this.#queue.push(packet);
    }
  }

  /** Sends one packet; returns its seq (auto-numbered unless given). */
  send(op: number, body?: unknown, seq?: number): number {
    const s = seq ?? ++this.#seq;
    this.#write(encodePacket(op, s, body === undefined ? undefined : typeof body === 'string' ? body : (body as object)));
    return s;
  }

  /** Sends raw bytes as they are. */
  sendRaw(bytes: Uint8Array): void {
    this.#write(bytes);
  }

  /** The next received packet matching `match` (default: any), waiting if needed. */
  next(match: (p: WirePacket) => boolean = () => true, what = 'a packet'): Promise<WirePacket> {
    const i = this.#queue.findIndex(match);
    if (i >= 0) return Promise.resolve(this.#queue.splice(i, 1)[0]!);
    if (this.isClosed) return Promise.reject(new Error(`${this.transport}: connection closed; no ${what}`));
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (p: WirePacket) => (clearTimeout(timer), resolve(p)),
        reject: (e: Error) => (clearTimeout(timer), reject(e)),
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(new Error(`${this.transport}: no ${what} within ${HANG_GUARD_MS} ms; got ${JSON.stringify(this.received.slice(-5))}`));
      }, HANG_GUARD_MS);
      this.#waiters.push(waiter);
    });
  }

  /** The next packet with op `op`. */
  nextOp(op: number): Promise<WirePacket> {
    return this.next((p) => p.op === op, `op ${op}`);
  }

  /** Sends a request and waits for the packet that answers it (same seq). */
  async request(op: number, body?: unknown): Promise<WirePacket> {
    const seq = this.send(op, body);
    return this.next((p) => p.seq === seq, `answer to seq ${seq}`);
  }

  /** Packets received and not yet taken. */
  pending(): WirePacket[] {
    return [...this.#queue];
  }

  /** Stops reading from the socket (a slow reader). */
  pause(): void {
    this.#pause();
  }

  /** Reads again. */
  resume(): void {
    this.#resume();
  }

  /** Closes from the client side. */
  close(): void {
    this.#end();
  }

  /** Waits for the server to close the connection (fails the test instead of hanging). */
  async waitClosed(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.closed,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${this.transport}: server did not close within ${HANG_GUARD_MS} ms`)), HANG_GUARD_MS);
      }),
    ]).finally(() => clearTimeout(timer));
  }
}

/** Connects to a server's TCP port or `/ws`. */
export async function connectWire(transport: WireTransport, srv: { httpPort: number; tcpPort: number }, host = '127.0.0.1'): Promise<WireClient> {
  if (transport === 'tcp') {
    const socket: Socket = connect({ port: srv.tcpPort, host, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.on('error', () => {});
    const client: WireClient = new WireClient(
      'tcp',
      {
        write: (b) => void (socket.destroyed || socket.write(b)),
        end: () => socket.destroy(),
        pause: () => socket.pause(),
        resume: () => socket.resume(),
      },
      new Promise((resolve) => socket.once('close', () => resolve())),
    );
    socket.on('data', (chunk) => client.onBytes(chunk));
    client.localPort = socket.localPort ?? 0;
    return client;
  }
  const ws = new WebSocket(`ws://${host}:${srv.httpPort}/ws`, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.on('error', () => {});
  const client: WireClient = new WireClient(
    'ws',
    {
      write: (b) => void (ws.readyState === WebSocket.OPEN && ws.send(b, { binary: true })),
      end: () => ws.terminate(),
      pause: () => ws.pause(),
      resume: () => ws.resume(),
    },
    new Promise((resolve) => ws.once('close', () => resolve())),
  );
  ws.on('message', (data: Buffer) => client.onBytes(data));
  client.localPort = (ws as unknown as { _socket: Socket })._socket.localPort ?? 0;
  return client;
}

/** Connects and authenticates; returns the client and its AUTH_OK body. */
export async function authedWire(
  transport: WireTransport,
  srv: { httpPort: number; tcpPort: number },
  sid: string,
  syncKey?: number,
): Promise<{ client: WireClient; authOk: any }> {
  const client = await connectWire(transport, srv);
  const r = await client.request(OP.AUTH, syncKey === undefined ? { sid } : { sid, syncKey });
  if (r.op !== OP.AUTH_OK) throw new Error(`AUTH failed: ${JSON.stringify(r)}`);
  return { client, authOk: r.body };
}

/** Both transports, for `for (const t of TRANSPORTS) describe(t, …)`. */
export const TRANSPORTS: readonly WireTransport[] = ['tcp', 'ws'];
