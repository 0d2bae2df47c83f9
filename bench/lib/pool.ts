/**
 * The controller's side of the load tool's worker processes (client-worker.ts): forks them, spreads devices
 * over them (≤ `MAX_SOCKETS_PER_WORKER` each) and over source addresses 127.0.0.2..127.0.0.N (see
 * `CONNS_PER_SOURCE_ADDRESS`), and sends them commands over IPC.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Endpoint, Transport } from './sim-conn.ts';

/** One process may hold 20,000 open files here (`ulimit -Hn`, not raisable); keep headroom. */
export const MAX_SOCKETS_PER_WORKER = 18_000;
/**
 * Connections per source address. The ephemeral range (32768–60999) has 28,232 ports, but binding a socket to
 * an address whose ports are mostly taken makes the kernel search for a free one: at 25,000 per address a 50k
 * run spent 30 s of system CPU per client process in bind() and connected at 300/s. 4,000 keeps it cheap.
 */
export const CONNS_PER_SOURCE_ADDRESS = 4_000;

/** A device a worker should hold. */
export interface DeviceSpec {
  id: number;
  username: string;
  sid: string;
  syncKey?: number;
}

/** Commands a worker understands. */
export type WorkerCommand =
  | { cmd: 'init'; transport: Transport; endpoint: Endpoint; localAddresses: string[]; workerIndex: number }
  | { cmd: 'connect'; conns: DeviceSpec[]; concurrency: number }
  | { cmd: 'send'; plan: { connId: number; to: string }[]; ratePerSec: number; durationMs: number; contentBytes: number; maxOutstanding: number }
  | { cmd: 'stats'; reset: boolean }
  | { cmd: 'heads' }
  | { cmd: 'drop' }
  | { cmd: 'reconnect'; concurrency: number; timeoutMs: number }
  | { cmd: 'burst'; connId: number; to: string; count: number; window: number }
  | { cmd: 'close' };

/** Source addresses for `connections` client sockets: 127.0.0.2 … */
export function sourceAddresses(connections: number): string[] {
  const n = Math.max(1, Math.ceil(connections / CONNS_PER_SOURCE_ADDRESS));
  return Array.from({ length: n }, (_, i) => `127.0.0.${i + 2}`);
}

/** How many worker processes `connections` sockets need (at least `min`). */
export function workersFor(connections: number, min = 2): number {
  return Math.max(min, Math.ceil(connections / MAX_SOCKETS_PER_WORKER));
}

/** The forked workers. */
export class WorkerPool {
  readonly children: ChildProcess[] = [];
  #reqId = 0;
  #pending = new Map<number, { resolve(v: any): void; reject(e: Error): void }>();
  onProgress: (worker: number, data: Record<string, unknown>) => void = () => {};

  /** Forks `count` workers and initialises them. */
  static async start(count: number, transport: Transport, endpoint: Endpoint, localAddresses: string[]): Promise<WorkerPool> {
    const pool = new WorkerPool();
    const script = fileURLToPath(new URL('./client-worker.ts', import.meta.url));
    for (let i = 0; i < count; i++) {
      const child = fork(script, [], { execArgv: ['--import', 'tsx'], serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      child.on('message', (m: any) => {
        if (m.event === 'progress') pool.onProgress(m.worker, m);
        else {
          const p = pool.#pending.get(m.reqId);
          if (!p) return;
          pool.#pending.delete(m.reqId);
          if (m.error) p.reject(new Error(`worker ${i}: ${m.error}`));
          else p.resolve(m.result);
        }
      });
      child.on('exit', (code) => {
        if (code !== 0 && code !== null) for (const p of pool.#pending.values()) p.reject(new Error(`worker ${i} exited with ${code}`));
      });
      pool.children.push(child);
    }
    await pool.all((i) => ({ cmd: 'init', transport, endpoint, localAddresses, workerIndex: i + 1 }));
    return pool;
  }

  /** Pids of the workers (for client CPU). */
  get pids(): number[] {
    return this.children.map((c) => c.pid!).filter(Boolean);
  }

  /** Sends one command to worker `i`. */
  request<T = any>(i: number, cmd: WorkerCommand): Promise<T> {
    const reqId = ++this.#reqId;
    return new Promise((resolve, reject) => {
      this.#pending.set(reqId, { resolve, reject });
      this.children[i]!.send({ ...cmd, reqId });
    });
  }

  /** Sends a command (made per worker) to every worker; resolves with their answers in order. */
  all<T = any>(make: (i: number) => WorkerCommand | undefined): Promise<T[]> {
    return Promise.all(this.children.map((_, i) => {
      const cmd = make(i);
      return cmd ? this.request<T>(i, cmd) : Promise.resolve(undefined as T);
    }));
  }

  /** Asks every worker to exit; kills any that has not after 3 s. */
  async close(): Promise<void> {
    await Promise.race([this.all(() => ({ cmd: 'close' })).catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
    for (const c of this.children) if (c.exitCode === null) c.kill('SIGKILL');
  }
}
