/**
 * Helpers for the SDK's end-to-end tests: clients on a chosen transport, a TCP proxy that can cut, stall or refuse
 * connections (to play a dead network), and waits with a hang guard (never a timing assertion).
 */
import assert from 'node:assert/strict';
import { waitUntil as pollUntil } from '../helpers/wait.ts';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { SynchatClient, type ClientOptions, type Gateway, type MsgEntry, type TransportName } from '../../src/sdk/index.ts';
import { nodeWebSocketConnector, tcpConnector } from '../../src/sdk/node/index.ts';

/** How long a wait may take before the test fails instead of hanging. */
const HANG_GUARD_MS = 30_000;

/** Transports every scenario runs over. */
export const TRANSPORTS: TransportName[] = ['tcp', 'ws', 'http'];

/** Polls `cond` until it holds; fails with `what` after the hang guard. */
export function waitUntil(cond: () => boolean, what: string, guardMs = HANG_GUARD_MS): Promise<void> {
  return pollUntil(cond, what, guardMs);
}

/** Gateways for one transport, pointing at `host:port` pairs (the server's, or a proxy's). */
export function gatewaysFor(transport: TransportName, ports: { httpPort: number; tcpPort: number }): Gateway[] {
  if (transport === 'tcp') return [{ transport: 'tcp', url: `tcp://127.0.0.1:${ports.tcpPort}` }];
  if (transport === 'ws') return [{ transport: 'ws', url: `ws://127.0.0.1:${ports.httpPort}/ws` }];
  return [];
}

/** Client options for one transport with fast test backoff. */
export function clientOptions(transport: TransportName, baseUrl: string, extra: Partial<ClientOptions> = {}): ClientOptions {
  return {
    baseUrl,
    connectors: transport === 'tcp' ? [tcpConnector()] : transport === 'ws' ? [nodeWebSocketConnector()] : [],
    backoff: { baseMs: 50, maxMs: 400 },
    longConnectionRetryMs: 200,
    synccheckTimeoutMs: 5_000,
    ...extra,
  };
}

/** A started client and what it received. */
export interface TestClient {
  client: SynchatClient;
  messages: MsgEntry[];
  /** clientMsgIds received, in order. */
  ids(): string[];
}

/** Registers (ignoring "taken"), logs in, starts, waits until online on `transport`. */
export async function startClient(
  transport: TransportName,
  baseUrl: string,
  username: string,
  deviceId: string,
  extra: Partial<ClientOptions> = {},
): Promise<TestClient> {
  const client = new SynchatClient(clientOptions(transport, baseUrl, extra));
  await client.register(username, `password-${username}`, username.toUpperCase()).catch((err) => {
    if (err.ret !== 6) throw err;
  });
  await client.login(username, `password-${username}`, { deviceId });
  const messages: MsgEntry[] = [];
  client.on('message', (m) => messages.push(m));
  await client.start();
  const state = await client.whenOnline();
  assert.equal(state.transport, transport, `online over ${transport} (got ${state.transport})`);
  return { client, messages, ids: () => messages.map((m) => m.clientMsgId) };
}

/** Makes two started clients' users contacts, through the SDK. */
export async function befriend(a: SynchatClient, b: SynchatClient): Promise<void> {
  await a.requestContact(b.username!, 'hi');
  await b.acceptContact(a.username!);
}

/** Asserts `list` has no repeats. */
export function assertNoDuplicates(list: readonly string[], what: string): void {
  assert.equal(new Set(list).size, list.length, `${what} has duplicates`);
}

/**
 * A TCP proxy in front of one port. `cut()` resets every open connection; `stall()` stops forwarding on the open
 * connections (bytes are held, sockets stay up: a dead network the OS does not report); `refuse(true)` closes new
 * connections at once; `pauseToClient()` stops reading from the server (a slow reader); `dropAnswers()` lets
 * requests through but closes a connection as soon as the server answers on it (the request was done, its answer
 * is lost); `close()` plays a dead node: open connections are cut and new ones refused.
 */
export class Proxy {
  readonly #server: Server;
  readonly #pairs = new Set<{ client: Socket; upstream: Socket; isStalled: boolean }>();
  #isRefusing = false;
  #isDroppingAnswers = false;
  port = 0;

  constructor(readonly targetPort: number) {
    this.#server = createServer((client) => {
      if (this.#isRefusing) return void client.destroy();
      const upstream = connect({ host: '127.0.0.1', port: this.targetPort });
      const pair = { client, upstream, isStalled: false };
      this.#pairs.add(pair);
      client.on('data', (d) => {
        if (!pair.isStalled) upstream.write(d);
      });
      upstream.on('data', (d) => {
        if (this.#isDroppingAnswers) {
          client.destroy();
          upstream.destroy();
        } else if (!pair.isStalled) client.write(d);
      });
      const end = () => {
        this.#pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
    });
  }

  async listen(port = 0): Promise<this> {
    await new Promise<void>((resolve, reject) => this.#server.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
    this.port = (this.#server.address() as { port: number }).port;
    return this;
  }

  /** Open proxied connections. */
  get size(): number {
    return this.#pairs.size;
  }

  cut(): void {
    for (const p of this.#pairs) {
      p.client.resetAndDestroy();
      p.upstream.destroy();
    }
  }

  stall(): void {
    for (const p of this.#pairs) p.isStalled = true;
  }

  refuse(isRefusing: boolean): void {
    this.#isRefusing = isRefusing;
  }

  dropAnswers(): void {
    this.#isDroppingAnswers = true;
  }

  pauseToClient(): void {
    for (const p of this.#pairs) p.upstream.pause();
  }

  resumeToClient(): void {
    for (const p of this.#pairs) p.upstream.resume();
  }

  async close(): Promise<void> {
    for (const p of this.#pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
