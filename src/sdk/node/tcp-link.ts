/**
 * Raw TCP byte link for the long connection (PROTOCOL.md: default port 8081), inside TLS for a `tls://` gateway
 * (a server with SYNCHAT_TLS_CERT lists those). Node only.
 */
import { connect, isIP, type Socket } from 'node:net';
import { connect as connectTls, rootCertificates } from 'node:tls';
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
  /**
   * PEM certificates trusted for `tls://` gateways besides Node's bundled roots: a self-signed server's (`npm run
   * dev-cert`) or a private CA's. @default Node's roots only
   */
  ca?: TrustedCa;
}

/** PEM certificates to trust (see {@link TcpConnectorOptions.ca}). */
export type TrustedCa = string | Buffer | readonly (string | Buffer)[];

/** Node's bundled roots plus `ca` (Node's `ca` option replaces the roots; a private CA should add to them). */
export function trustedRoots(ca: TrustedCa): (string | Buffer)[] {
  return [...rootCertificates, ...(Array.isArray(ca) ? ca : [ca as string | Buffer])];
}

/** The read buffer of {@link TcpConnectorOptions.isSharedReadBuffer}: one read takes at most this much. */
let sharedReadBuffer: Buffer | undefined;

/** Parses `tcp://host:port`, `tls://host:port` (`isTls`) or `host:port` (plain TCP). */
export function parseTcpUrl(url: string): { host: string; port: number; isTls: boolean } {
  const u = new URL(url.includes('://') ? url : `tcp://${url}`);
  const port = Number(u.port);
  if ((u.protocol !== 'tcp:' && u.protocol !== 'tls:') || !Number.isInteger(port) || port <= 0) throw new Error(`bad tcp gateway url: ${url}`);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port, isTls: u.protocol === 'tls:' };
}

/** One TCP socket carrying packets. */
export class TcpLink implements ByteLink {
  readonly #socket: Socket;
  #isClosed = false;

  constructor(url: string, handler: ByteLinkHandler, options: TcpConnectorOptions = {}) {
    const { host, port, isTls } = parseTcpUrl(url);
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
    const common = { host, port, localAddress: options.localAddress, ...(onread ? { onread } : {}) };
    // TLS: the certificate must name the host (SNI is sent for names, not for addresses), TLS 1.2 at least as the
    // server asks; the link opens once the handshake is done.
    const socket = (this.#socket = isTls
      ? connectTls({ ...common, minVersion: 'TLSv1.2', ...(isIP(host) ? {} : { servername: host }), ...(options.ca ? { ca: trustedRoots(options.ca) } : {}) })
      : connect({ ...common, noDelay: options.isNoDelay ?? true }));
    if (isTls) socket.setNoDelay(options.isNoDelay ?? true);
    let lastError = '';
    socket.on(isTls ? 'secureConnect' : 'connect', () => handler.onLinkOpen());
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
