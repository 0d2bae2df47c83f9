/**
 * Test helper: a Synchat server in its own process (for crash and multi-process tests), started the way
 * `npm start` starts it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { nodeFetch } from '../../src/sdk/node/index.ts';
import { DEFAULTS } from '../../src/server/config.ts';

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A server child process. */
export interface ServerChild {
  child: ChildProcess;
  url: string;
  /** SIGKILL and wait for the exit. */
  kill9(): Promise<void>;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
}

/** Starts src/server/main.ts with SYNCHAT_* env; resolves once it answers (over HTTPS, trusting its certificate, with SYNCHAT_TLS_CERT). */
export async function spawnServerProcess(env: Record<string, string>): Promise<ServerChild> {
  const httpPort = env.SYNCHAT_HTTP_PORT ?? String(await freePort());
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server/main.ts'], {
    env: { ...process.env, SYNCHAT_LOG_LEVEL: 'error', SYNCHAT_PASSWORD_LOG2N: '10', SYNCHAT_RATE_LIMIT: 'off', SYNCHAT_MAX_CONNS_PER_IP: String(DEFAULTS.maxConns), ...env, SYNCHAT_HTTP_PORT: httpPort },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = `${env.SYNCHAT_TLS_CERT ? 'https' : 'http'}://127.0.0.1:${httpPort}`;
  const get = env.SYNCHAT_TLS_CERT ? nodeFetch({ ca: readFileSync(env.SYNCHAT_TLS_CERT) }) : fetch;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with code ${child.exitCode}`);
    try {
      if ((await get(url + '/api/gateways')).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('server did not answer within 30 s');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    url,
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A several-process server (`SYNCHAT_WORKERS=2`) on fresh ports with a data folder of its own. */
export interface GatewayServer extends ServerChild {
  ports: { httpPort: number; tcpPort: number };
  /** Stops the server and removes its data folder. */
  stopAndClean(): Promise<void>;
}

/** Starts a server with two gateway processes on free ports, its data in a new temp folder named `prefix…`. */
export async function spawnGatewayServer(prefix: string): Promise<GatewayServer> {
  const dataDir = mkdtempSync(join(tmpdir(), prefix));
  const ports = { httpPort: await freePort(), tcpPort: await freePort() };
  const server = await spawnServerProcess({
    SYNCHAT_DATA_DIR: dataDir,
    SYNCHAT_WORKERS: '2',
    SYNCHAT_HTTP_PORT: String(ports.httpPort),
    SYNCHAT_TCP_PORT: String(ports.tcpPort),
  });
  return Object.assign(server, {
    ports,
    async stopAndClean() {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  });
}
