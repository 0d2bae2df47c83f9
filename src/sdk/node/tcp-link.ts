/**
 * Raw TCP byte link for the long connection (PROTOCOL.md: default port 8081). Node only.
 */
import { connect, type Socket } from 'node:net';
import type { ByteLink, ByteLinkHandler, Connector } from '../wire.ts';

/** Options of {@link tcpConnector}. */
export interface TcpConnectorOptions {
  /** Source address (the load tool spreads connections over 127.0.0.x to pass 64k ports per address). */
  localAddress?: string;
  /** Disable Nagle's algorithm. @default true */
  isNoDelay?: boolean;
  /**
   * Read into one 64 KiB buffer shared by every socket of the process (net's `onread`) instead of a fresh Buffer
   * per chunk, and cork the socket while a read is handled, so the ACKs of several PUSHes in one read leave in one
   * write. Safe because a read's handler runs to its end before the next read and `onLinkData`'s chunk may be
   * reused after it returns. For processes holding thousands of sockets (the load tool). @default false
   */
  isSharedReadBuffer?: boolean;
}

/** The read buffer of {@link TcpConnectorOptions.isSharedReadBuffer}: one read takes at most this much. */
let sharedReadBuffer: Buffer | undefined;

/** Parses `tcp://host:port` (or `host:port`). */
export function parseTcpUrl(url: string): { host: string; port: number } {
  const u = new URL(url.includes('://') ? url : `tcp://${url}`);
  const port = Number(u.port);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`bad tcp gateway url: ${url}`);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port };
}

/** One TCP socket carrying packets. */
export class TcpLink implements ByteLink {
  readonly #socket: Socket;
  #isClosed = false;

  constructor(url: string, handler: ByteLinkHandler, options: TcpConnectorOptions = {}) {
    const { host, port } = parseTcpUrl(url);
    const onread = options.isSharedReadBuffer
      ? {
          buffer: (sharedReadBuffer ??= Buffer.allocUnsafe(64 * 1024)),
          callback: (bytes: number, buf: Uint8Array): boolean => {
            socket.cork();
            handler.onLinkData(buf.subarray(0, bytes));
            socket.uncork();
            return true;
          },
        }
      : undefined;
    const socket = (this.#socket = connect({ host, port, localAddress: options.localAddress, noDelay: options.isNoDelay ?? true, ...(onread ? { onread } : {}) }));
    let lastError = '';
    socket.on('connect', () => handler.onLinkOpen());
    if (!onread) socket.on('data', (chunk: Buffer) => handler.onLinkData(chunk));
    socket.on('error', (err) => {
      lastError = err.message;
    });
    socket.on('close', () => {
      if (this.#isClosed) return;
      this.#isClosed = true;
      handler.onLinkClose(lastError || 'tcp connection closed');
    });
  }

  /** Bytes queued in the socket and not yet written. */
  get bufferedBytes(): number {
    return this.#socket.writableLength;
  }

  /** The underlying socket (for pausing reads in tests and the load tool). */
  get socket(): Socket {
    return this.#socket;
  }

  send(data: Uint8Array): void {
    if (!this.#isClosed) this.#socket.write(data);
  }

  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#socket.destroy();
  }
}

/** The TCP connector. */
export function tcpConnector(options: TcpConnectorOptions = {}): Connector {
  return { transport: 'tcp', connect: (url, handler) => new TcpLink(url, handler, options) };
}
