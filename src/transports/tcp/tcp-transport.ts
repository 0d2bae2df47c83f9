/**
 * The binary long connection over raw TCP (PROTOCOL.md "Binary long connection", default port 8081): a
 * `node:net` server — or, with `tls`, a `node:tls` server (the same packets inside TLS, docs/deploy.md) — whose
 * sockets become {@link Connection}s through one {@link Link} adapter (a TLSSocket is a net.Socket). Packets may
 * be coalesced in one read or split across reads; the connection's decoder handles both. In cluster mode every gateway listens on the same port and
 * node:cluster spreads the connections. See docs/architecture.md "Long connection".
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TlsOptions } from 'node:tls';
import type { Connection, Link } from '../conn/connection.ts';
import type { Connections } from '../conn/connections.ts';
import type { ConnectionCaps, Refusal } from '../conn-caps.ts';

/** A `net.Socket` as a {@link Link}. */
class TcpLink implements Link {
  readonly #socket: Socket;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  get bufferedBytes(): number {
    return this.#socket.writableLength;
  }

  get remoteAddress(): string {
    return this.#socket.remoteAddress ?? '';
  }

  write(data: Buffer): void {
    if (!this.#socket.destroyed) this.#socket.write(data);
  }

  end(): void {
    this.#socket.end();
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

function ignore(): void {
  // 'error' is always followed by 'close', where the connection cleans up.
}

function accept(connections: Connections, caps: ConnectionCaps, socket: Socket, isTls: boolean): void {
  // Counted by the socket's peer (src/transports/conn-caps.ts) until it closes — a TLS socket already at its raw
  // accept, before the handshake; none left even to refuse: dropped.
  let refusal: Refusal | undefined;
  if (isTls) {
    refusal = caps.refusalOf(socket);
  } else {
    const admission = caps.hold(socket);
    if (!admission) return;
    refusal = admission.refusal;
  }
  socket.setNoDelay(true);
  const conn: Connection = connections.open(new TcpLink(socket), 'tcp');
  socket.on('data', (chunk: Buffer) => conn.onBytes(chunk));
  socket.on('drain', () => conn.onDrain());
  socket.on('close', () => conn.onLinkClosed());
  socket.on('error', ignore);
  // Over a cap: ERROR {ret 1205} and close (after LINGER_MS at most, like any failed connection).
  if (refusal) conn.fail(refusal.ret, refusal.errMsg);
}

/** Options of {@link startTcpTransport}. */
export interface TcpTransportOptions {
  host: string;
  /** 0 = ephemeral. */
  port: number;
  /** The process's connection caps, shared with the HTTP listener. */
  caps: ConnectionCaps;
  /** Certificate, key and TLS settings (src/server/tls.ts, the handshake timeout included): the port speaks TLS; absent: plain TCP. */
  tls?: TlsOptions;
}

/** Starts the TCP listener; resolves with the server once it listens (port 0 = ephemeral). */
export async function startTcpTransport(connections: Connections, opts: TcpTransportOptions): Promise<Server> {
  // Nagle off (in accept): a HEARTBEAT_ACK or PUSH should leave at once; the connection already batches per turn.
  const onSocket = (socket: Socket) => accept(connections, opts.caps, socket, opts.tls !== undefined);
  // A TLS connection becomes a Connection once its handshake is done ('secureConnection'). A failed or timed-out
  // handshake is a 'tlsClientError', after which Node 20 leaves the socket open (measured: a silent peer was still
  // connected seconds after its handshake timeout): close it here, as https.Server does.
  const server: Server = opts.tls ? createTlsServer(opts.tls, onSocket).on('tlsClientError', (_err, socket) => socket.destroy()) : createServer(onSocket);
  if (opts.tls) server.on('connection', (raw: Socket) => void opts.caps.hold(raw));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: opts.port, host: opts.host, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

/** The port a started server listens on. */
export function portOf(server: Server): number {
  const a = server.address();
  return typeof a === 'object' && a ? a.port : 0;
}
