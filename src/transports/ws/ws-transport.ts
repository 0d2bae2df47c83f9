/**
 * The binary long connection over WebSocket (PROTOCOL.md "Binary long connection"): binary messages at `/ws` on
 * the HTTP port, each carrying one or more whole packets. `ws` runs without a server of its own (`noServer`) on
 * the HTTP server's `upgrade` event, without compression (it costs ~300 KiB per connection with default zlib
 * windows and our packets are small), and with maxPayload = maxPacketBytes. See docs/architecture.md
 * "Long connection".
 */
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { RET } from '../../protocol/index.ts';
import { clientAddress, type TrustProxy } from '../client-address.ts';
import type { Connection, Link } from '../conn/connection.ts';
import type { Connections } from '../conn/connections.ts';

/** The path of the WebSocket endpoint. */
export const WS_PATH = '/ws';

const SEND_OPTIONS = { binary: true, compress: false, fin: true } as const;

/** A `ws` WebSocket as a {@link Link}. */
class WsLink implements Link {
  readonly #ws: WebSocket;
  readonly #address: string;

  constructor(ws: WebSocket, address: string) {
    this.#ws = ws;
    this.#address = address;
  }

  get bufferedBytes(): number {
    return this.#ws.bufferedAmount;
  }

  get remoteAddress(): string {
    return this.#address;
  }

  write(data: Buffer): void {
    if (this.#ws.readyState === 1) this.#ws.send(data, SEND_OPTIONS);
  }

  end(): void {
    this.#ws.close(1000);
  }

  destroy(): void {
    this.#ws.terminate();
  }
}

function ignore(): void {
  // 'error' is always followed by 'close', where the connection cleans up.
}

function accept(connections: Connections, ws: WebSocket, socket: Duplex, address: string): void {
  const conn: Connection = connections.open(new WsLink(ws, address), 'ws');
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    // PROTOCOL.md: packets travel in binary messages; a text message is a framing error.
    if (isBinary) conn.onBytes(data);
    else conn.fail(RET.BAD_REQUEST, 'framing error: text message; send packets in binary messages');
  });
  ws.on('close', () => conn.onLinkClosed());
  ws.on('error', ignore);
  // ws has no drain event of its own; its bytes queue on the socket, which has.
  socket.on('drain', () => conn.onDrain());
}

/**
 * Serves `/ws` on `server`'s upgrade event (an HTTPS server's too: then it is WSS); other upgrade paths are
 * refused. `trustProxy` must be the HTTP transport's, so that a connection's address is what its long-poll's
 * would be. Returns a function to stop.
 */
export function attachWsTransport(server: HttpServer, connections: Connections, opts: { trustProxy?: TrustProxy } = {}): () => void {
  const trust = opts.trustProxy ?? (() => false);
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: connections.limits.maxPacketBytes,
    clientTracking: false,
  });
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== WS_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const address = clientAddress(req, trust);
    wss.handleUpgrade(req, socket, head, (ws) => accept(connections, ws, socket, address));
  };
  server.on('upgrade', onUpgrade);
  return () => {
    server.off('upgrade', onUpgrade);
    wss.close();
  };
}
