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
import type { ConnectionCaps } from '../conn-caps.ts';

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
 * `SYNCHAT_ALLOWED_ORIGINS` as a list of origins (`scheme://host[:port]`, lower case, no default port); '' = none
 * listed (then only the server's own origin may open `/ws`). Throws a TypeError naming a bad entry.
 */
export function parseAllowedOrigins(list: string): string[] {
  return list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((entry) => {
      let url: URL | undefined;
      try {
        url = new URL(entry);
      } catch {
        // reported below
      }
      // Scheme, host and port only: a path, query or user part means the entry is not what the browser sends.
      if (!url || !/^https?:$/.test(url.protocol) || url.pathname !== '/' || url.search || url.hash || url.username) {
        throw new TypeError(`has ${JSON.stringify(entry)}, not an origin like https://chat.example.com`);
      }
      return url.origin;
    });
}

/**
 * Whether a browser at `origin` may open `/ws` (docs/protocol.md "Connection limits"): no Origin header (not a browser:
 * the SDK in Node, tools) may; else the origin must be listed, or — none listed — name the host the request was
 * sent to (its Host header), so a page of another site cannot use a visitor's browser to connect.
 */
export function isOriginAllowed(origin: string | undefined, host: string | undefined, allowed: readonly string[]): boolean {
  if (origin === undefined) return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // `null` (a sandboxed frame, a file) and anything unreadable
  }
  if (allowed.length > 0) return allowed.includes(url.origin);
  if (!host) return false;
  try {
    return new URL(`${url.protocol}//${host}`).host === url.host;
  } catch {
    return false;
  }
}

/** Answers an upgrade request with an HTTP error `{ret, errMsg}` and closes. */
function refuseUpgrade(socket: Duplex, status: string, ret: number, errMsg: string): void {
  const body = JSON.stringify({ ret, errMsg });
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

/** Options of {@link attachWsTransport}. */
export interface WsTransportOptions {
  /** Must be the HTTP transport's, so that a connection's address is what its long-poll's would be. @default trust none */
  trustProxy?: TrustProxy;
  /** The process's connection caps, which counted the upgrading socket as an HTTP one: a refused socket gets 429/503. */
  caps: ConnectionCaps;
  /** {@link parseAllowedOrigins}; empty: the server's own origin only. */
  allowedOrigins: readonly string[];
}

/**
 * Serves `/ws` on `server`'s upgrade event (an HTTPS server's too: then it is WSS); other upgrade paths are
 * refused, as are a socket over a connection cap and a browser origin not allowed. Returns a function to stop.
 */
export function attachWsTransport(server: HttpServer, connections: Connections, opts: WsTransportOptions): () => void {
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
    const refusal = opts.caps.refusalOf(req.socket);
    if (refusal) {
      refuseUpgrade(socket, refusal.httpStatus === 429 ? '429 Too Many Requests' : '503 Service Unavailable', refusal.ret, refusal.errMsg);
      return;
    }
    if (!isOriginAllowed(req.headers.origin, req.headers.host, opts.allowedOrigins)) {
      refuseUpgrade(socket, '403 Forbidden', RET.FORBIDDEN, `origin ${JSON.stringify(req.headers.origin)} may not open ${WS_PATH} (SYNCHAT_ALLOWED_ORIGINS)`);
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
