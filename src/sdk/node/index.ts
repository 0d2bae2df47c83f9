// Node-only parts of the client SDK: raw TCP (and TLS) link, a fetch that trusts a given CA, and file store; see
// docs/sdk.md "Node".
import WebSocket from 'ws';
import type { Connector } from '../wire.ts';
import { webSocketConnector, type WebSocketConstructor } from '../ws-link.ts';
import { tcpConnector, trustedRoots, type TcpConnectorOptions, type TrustedCa } from './tcp-link.ts';

export { TcpLink, tcpConnector, parseTcpUrl, type TcpConnectorOptions, type TrustedCa } from './tcp-link.ts';
export { nodeFetch, type NodeFetchOptions } from './node-fetch.ts';
export { FileStore } from './file-store.ts';

/**
 * WebSocket connector for Node: the global WebSocket when there is one (Node ≥ 22), else the `ws` package. With
 * `ca` (PEM certificates trusted for `wss://` besides Node's roots) always the `ws` package, which takes a CA.
 */
export function nodeWebSocketConnector(options: { ca?: TrustedCa } = {}): Connector {
  if (options.ca) {
    const ca = trustedRoots(options.ca);
    const Impl = function (url: string) {
      return new WebSocket(url, { ca });
    } as unknown as WebSocketConstructor;
    return webSocketConnector(Impl);
  }
  const Impl = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ?? (WebSocket as unknown as WebSocketConstructor);
  return webSocketConnector(Impl);
}

/**
 * The Node default preference: TCP first (TLS for a `tls://` gateway), then WebSocket, then (the client's own
 * fallback) HTTP long-poll. `ca` applies to both.
 */
export function nodeConnectors(options: TcpConnectorOptions = {}): Connector[] {
  return [tcpConnector(options), nodeWebSocketConnector(options.ca ? { ca: options.ca } : {})];
}
