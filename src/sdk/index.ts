// The Synchat client SDK (browser-safe core; Node-only parts in ./node/); see docs/sdk.md and
// docs/architecture.md "Layers". Imports src/protocol only.
export { SynchatClient, SendFailedError, type ClientOptions } from './client.ts';
export type {
  ClientEvents,
  ConnectionState,
  ConnectionStateName,
  ContactList,
  DeviceSession,
  EntryEvent,
  Gateway,
  LoginAnswer,
  OutboxItem,
  OutboxStateName,
  OutgoingMessage,
  QrAskingDevice,
  QrLoginTicket,
  SendAnswer,
  SessionEnded,
  SessionState,
  TransportName,
} from './types.ts';
export { MemoryStore, type ClientStore } from './store.ts';
export {
  MediaClient,
  MediaError,
  type MediaClientOptions,
  type MediaSendAnswer,
  type UploadOptions,
  type UploadProgress,
  type UploadResult,
} from './media.ts';
export { IndexedDbStore, type IndexedDbStoreOptions } from './idb-store.ts';
export {
  WireConnection,
  WireTicker,
  WireClosedError,
  defaultTicker,
  type AuthOk,
  type ByteLink,
  type ByteLinkHandler,
  type Connector,
  type ErrorBody,
  type LinkConnect,
  type NotifyBody,
  type PushBody,
  type WireHandler,
  type WireOptions,
} from './wire.ts';
export { WebSocketLink, webSocketConnector, hasGlobalWebSocket, type WebSocketConstructor, type WebSocketLike } from './ws-link.ts';
export { HttpClient, type FetchLike, type HttpAnswer, type HttpFailover, type HttpRequestOptions } from './http.ts';
export { GatewayDirectory, type GatewayDirectoryOptions } from './gateways.ts';
export { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.ts';
export { HeartbeatTuner, WEB_HEARTBEAT, MOBILE_HEARTBEAT, heartbeatPolicyProblem, type HeartbeatPolicy } from './heartbeat.ts';
export { Emitter } from './emitter.ts';
export { SynchatError, RET, MSG_TYPE, SELECTOR, type Entry, type MsgEntry, type ReadEntry, type RevokeEntry, type ContactEntry, type ContactRequestEntry, type GroupEntry } from '../protocol/index.ts';
