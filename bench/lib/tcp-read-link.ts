/**
 * The load tool's TCP byte link: the SDK's `TcpLink` (src/sdk/node/tcp-link.ts) reads each chunk into a fresh
 * Buffer and hands it over a stream 'data' event; a load-tool process holding thousands of sockets pays that for
 * every PUSH and SEND_ACK. This link reads with net's `onread` into one buffer shared by every socket of the
 * process (safe: a read's callback runs to its end before the next read, and the frame decoder copies any partial
 * packet it keeps — the `ByteLinkHandler.onLinkData` contract), and corks the socket while a read is handled, so
 * the ACKs of several PUSHes in one read leave in one write. Same packets on the wire; only the client's cost
 * differs.
 */
import { connect, type Socket } from 'node:net';
import { parseTcpUrl } from '../../src/sdk/node/index.ts';
import type { ByteLink, ByteLinkHandler, Connector } from '../../src/sdk/wire.ts';

/** 64 KiB: one read takes at most this much; the rest waits for the next read. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

class SharedBufferTcpLink implements ByteLink {
  readonly #socket: Socket;
  #isClosed = false;

  constructor(url: string, handler: ByteLinkHandler, localAddress: string | undefined) {
    const { host, port } = parseTcpUrl(url);
    let lastError = '';
    const socket = (this.#socket = connect({
      host,
      port,
      localAddress,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (bytes: number, buf: Uint8Array) => {
          // Packets written while this read is handled (the ACKs of several PUSHes) leave in one write.
          socket.cork();
          handler.onLinkData(buf.subarray(0, bytes));
          socket.uncork();
          return true;
        },
      },
    }));
    socket.on('connect', () => handler.onLinkOpen());
    socket.on('error', (err) => {
      lastError = err.message;
    });
    socket.on('close', () => {
      if (this.#isClosed) return;
      this.#isClosed = true;
      handler.onLinkClose(lastError || 'tcp connection closed');
    });
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

/** A TCP connector whose sockets bind `localAddress` and share one read buffer. */
export function sharedBufferTcpConnector(localAddress?: string): Connector {
  return { transport: 'tcp', connect: (url, handler) => new SharedBufferTcpLink(url, handler, localAddress) };
}
