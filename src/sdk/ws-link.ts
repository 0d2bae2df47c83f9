/**
 * WebSocket byte link for the long connection (PROTOCOL.md: binary messages at `/ws`). Uses the browser's global
 * WebSocket, or any constructor with the same surface (in Node 20: the `ws` package's `WebSocket`).
 */
import type { ByteLink, ByteLinkHandler, Connector } from './wire.ts';

/** The part of the WHATWG WebSocket interface the link uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor (browser global or the `ws` package). */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** One WebSocket carrying packets: each binary message may hold several packets or part of one. */
export class WebSocketLink implements ByteLink {
  readonly #ws: WebSocketLike;
  #isClosed = false;

  constructor(url: string, handler: ByteLinkHandler, WebSocketImpl: WebSocketConstructor) {
    const ws = (this.#ws = new WebSocketImpl(url));
    ws.binaryType = 'arraybuffer';
    let lastError = '';
    ws.onopen = () => handler.onLinkOpen();
    ws.onmessage = (ev) => {
      const data = ev.data;
      if (data instanceof ArrayBuffer) handler.onLinkData(new Uint8Array(data));
      else if (ArrayBuffer.isView(data)) handler.onLinkData(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      // A text message is not part of the protocol: drop the connection rather than guess.
      else this.#fail(handler, 'text message on a binary connection');
    };
    ws.onerror = (ev) => {
      lastError = String(ev?.message ?? ev?.error?.message ?? 'websocket error');
    };
    ws.onclose = (ev) => {
      if (this.#isClosed) return;
      this.#isClosed = true;
      handler.onLinkClose(lastError || `websocket closed (${ev?.code ?? 'no code'}${ev?.reason ? ` ${ev.reason}` : ''})`);
    };
  }

  /** Bytes queued in the socket and not yet sent. */
  get bufferedBytes(): number {
    return this.#ws.bufferedAmount;
  }

  send(data: Uint8Array): void {
    if (this.#isClosed || this.#ws.readyState !== 1) return;
    this.#ws.send(data);
  }

  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    try {
      this.#ws.close();
    } catch {
      // Closing a socket that is still connecting throws in some implementations; it is going away either way.
    }
    this.#ws.onopen = this.#ws.onmessage = this.#ws.onerror = this.#ws.onclose = null;
  }

  #fail(handler: ByteLinkHandler, reason: string): void {
    this.close();
    handler.onLinkClose(reason);
  }
}

/**
 * The WebSocket connector. `WebSocketImpl` defaults to the global `WebSocket` (browsers, Node ≥ 22); pass the
 * `ws` package's class in Node 20. Throws when neither exists.
 */
export function webSocketConnector(WebSocketImpl?: WebSocketConstructor): Connector {
  const Impl = WebSocketImpl ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!Impl) throw new Error('webSocketConnector: no global WebSocket here; pass a constructor (e.g. the ws package)');
  return { transport: 'ws', connect: (url, handler) => new WebSocketLink(url, handler, Impl) };
}

/** True when this realm has a global WebSocket. */
export function hasGlobalWebSocket(): boolean {
  return typeof (globalThis as { WebSocket?: unknown }).WebSocket === 'function';
}
