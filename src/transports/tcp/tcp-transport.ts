/**
 * The binary long connection over raw TCP (PROTOCOL.md "Binary long connection", default port 8081): a
 * `node:net` server whose sockets become {@link Connection}s. Packets may be coalesced in one read or split across
 * reads; the connection's decoder handles both. In cluster mode every gateway listens on the same port and
 * node:cluster spreads the connections. See docs/architecture.md "Long connection".
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Connection, Link } from '../conn/connection.ts';
import type { Connections } from '../conn/connections.ts';

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

function accept(connections: Connections, socket: Socket): void {
  const conn: Connection = connections.open(new TcpLink(socket), 'tcp');
  socket.on('data', (chunk: Buffer) => conn.onBytes(chunk));
  socket.on('drain', () => conn.onDrain());
  socket.on('close', () => conn.onLinkClosed());
  socket.on('error', ignore);
}

/** Starts the TCP listener; resolves with the server once it listens (port 0 = ephemeral). */
export async function startTcpTransport(connections: Connections, opts: { host: string; port: number }): Promise<Server> {
  // Nagle off: a HEARTBEAT_ACK or PUSH should leave at once; the connection already batches per event-loop turn.
  const server = createServer({ noDelay: true }, (socket) => accept(connections, socket));
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
