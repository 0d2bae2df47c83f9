/**
 * The server a run drives: a Synchat server the bench starts itself (spawnServer; in cluster mode on fixed ports
 * with SYNCHAT_WORKERS gateway processes), the minimal `ws` relay baseline (bench/baseline/ws-relay.ts), or a
 * running server given by `--url` (its endpoints read from `/api/gateways`; `--server-pid` lets the bench sample
 * its memory and CPU). `--cpu-prof DIR` profiles the server's processes (V8 .cpuprofile files, written at exit).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { processTree } from './monitor.ts';
import { spawnServer } from './proc.ts';
import type { Endpoint } from './sim-conn.ts';

/** A server under test. */
export interface Target {
  kind: 'synchat' | 'baseline' | 'url';
  endpoint: Endpoint;
  /** The server's processes now (primary and gateway children); empty when unknown. */
  pids(): number[];
  /** Settings it was started with (every SYNCHAT_* the bench set, its defaults included), for the JSON record. */
  settings: Record<string, string | number>;
  stop(): Promise<void>;
}

/** A free-looking port pair below the ephemeral range (32768+), so client sockets never take it. */
function pickPorts(): { httpPort: number; tcpPort: number } {
  const httpPort = 10_000 + 2 * Math.floor(Math.random() * 10_000);
  return { httpPort, tcpPort: httpPort + 1 };
}

function endpointFor(httpPort: number, tcpPort: number): Endpoint {
  return { httpUrl: `http://127.0.0.1:${httpPort}`, tcpHost: '127.0.0.1', tcpPort, wsUrl: `ws://127.0.0.1:${httpPort}/ws` };
}

/** Starts a Synchat server with `workers` gateway processes (0 = one process) and extra SYNCHAT_* settings. */
export async function startSynchat(workers: number, env: Record<string, string> = {}, execArgv: string[] = []): Promise<Target> {
  const ports = pickPorts();
  const server = await spawnServer({ SYNCHAT_WORKERS: String(workers), ...env }, { ...ports, execArgv });
  // Gateways fork after the primary answers; give them a moment so the first samples include them.
  await new Promise((r) => setTimeout(r, workers > 0 ? 1500 : 100));
  return {
    kind: 'synchat',
    endpoint: endpointFor(server.httpPort, server.tcpPort),
    pids: () => processTree(server.pid),
    settings: { workers, ...server.settings },
    stop: () => server.stop(),
  };
}

/** Starts the baseline relay (bench/baseline/ws-relay.ts) in its own process. */
export async function startBaseline(): Promise<Target> {
  const { httpPort } = pickPorts();
  const script = fileURLToPath(new URL('../baseline/ws-relay.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script, '--port', String(httpPort)], { stdio: ['ignore', 'inherit', 'inherit'] });
  const url = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`baseline relay exited with ${child.exitCode}`);
    try {
      if ((await fetch(url + '/api/gateways')).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('baseline relay did not start within 20 s');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    kind: 'baseline',
    endpoint: endpointFor(httpPort, 0),
    pids: () => processTree(child.pid!),
    settings: { relay: 'ws' },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Uses a running server: endpoints from its gateway directory. */
export async function useUrl(url: string, serverPid?: number): Promise<Target> {
  const r = (await (await fetch(new URL('/api/gateways', url))).json()) as { gateways: { transport: string; url: string }[] };
  const byKind = Object.fromEntries(r.gateways.map((g) => [g.transport, g.url]));
  const tcp = byKind.tcp ? new URL(byKind.tcp) : undefined;
  return {
    kind: 'url',
    endpoint: {
      httpUrl: url.replace(/\/$/, ''),
      tcpHost: tcp?.hostname ?? '127.0.0.1',
      tcpPort: tcp ? Number(tcp.port) : 0,
      wsUrl: byKind.ws ?? url.replace(/^http/, 'ws').replace(/\/$/, '') + '/ws',
    },
    pids: () => (serverPid ? processTree(serverPid) : []),
    settings: { url },
    async stop() {},
  };
}

/**
 * Starts what the options ask for: `--url` (a running server), else Synchat with `--server-workers` and
 * `--password-log2n` (scrypt cost; the bench's default is in BENCH_SERVER_ENV, proc.ts).
 */
export async function startTarget(o: Record<string, string>, env: Record<string, string> = {}): Promise<Target> {
  if (o.url) return useUrl(o.url, o['server-pid'] ? Number(o['server-pid']) : undefined);
  // `--cpu-prof DIR`: every server process writes a V8 CPU profile there when it exits (gateways inherit the
  // primary's execArgv through node:cluster; Node 20 refuses --cpu-prof in NODE_OPTIONS).
  const execArgv = o['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${o['cpu-prof']}`] : [];
  const scrypt: Record<string, string> = o['password-log2n'] ? { SYNCHAT_PASSWORD_LOG2N: o['password-log2n'] } : {};
  return startSynchat(Number(o['server-workers'] ?? 2), { ...scrypt, ...env }, execArgv);
}
