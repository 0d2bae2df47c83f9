// Node-only parts of the client SDK: raw TCP link and file store; see docs/sdk.md "Node".
import WebSocket from 'ws';
import type { Connector } from '../wire.ts';
import { webSocketConnector, type WebSocketConstructor } from '../ws-link.ts';
import { tcpConnector, type TcpConnectorOptions } from './tcp-link.ts';

export { TcpLink, tcpConnector, parseTcpUrl, type TcpConnectorOptions } from './tcp-link.ts';
export { FileStore } from './file-store.ts';

/** WebSocket connector for Node: the global WebSocket when there is one (Node ≥ 22), else the `ws` package. */
export function nodeWebSocketConnector(): Connector {
  const Impl = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ?? (WebSocket as unknown as WebSocketConstructor);
  return webSocketConnector(Impl);
}

/** The Node default preference: TCP first, then WebSocket. */
export function nodeConnectors(options: TcpConnectorOptions = {}): Connector[] {
  return [tcpConnector(options), nodeWebSocketConnector()];
}
