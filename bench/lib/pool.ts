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
 * run spent 30 s of system CPU per client process in bind() and connected at 300/s. A reconnect storm doubles
 * the count (the dropped sockets wait in TIME_WAIT on the same addresses): at 4,000 per address a 20k storm ran
 * the load tool at 1.65 cores for 922 reconnects/s (the server at 0.3); at 1,000 the same storm reconnected at
 * 3,928/s and was current in 5.1 s instead of 21.7 s (2026-12-03).
 */
export const CONNS_PER_SOURCE_ADDRESS = 1_000;

/** A device a worker should hold. */
export interface DeviceSpec {
  id: number;
  username: string;
  sid: string;
  syncKey?: number;
  /** Which of the target's nodes it connects to (an index into the `init` command's endpoints). @default 0 */
  node?: number;
}

/**
 * Commands a worker understands. A load step (steps.ts) runs `expect` (the step's routes: which device is owed
 * which sender's messages), `send`, `count` until the deliveries drain, then `reconcile` with every sender's
 * acknowledged-send bitmaps, and `msgIds` to name the sampled lost or doubled messages (reconcile.ts).
 */
export type WorkerCommand =
  | { cmd: 'init'; transport: Transport; /** One per node; a device connects to `endpoints[spec.node ?? 0]`. */ endpoints: Endpoint[]; localAddresses: string[]; workerIndex: number }
  | { cmd: 'connect'; conns: DeviceSpec[]; concurrency: number }
  | {
      cmd: 'send';
      step: number;
      /** Global index of plan[0]; plan[i] is item firstItem + i. */
      firstItem: number;
      plan: { connId: number; to: string }[];
      ratePerSec: number;
      durationMs: number;
      contentBytes: number;
      maxOutstanding: number;
      /** After the schedule ends, how long sends may still wait for SEND_ACK before they count as unanswered, in ms. */
      answerTimeoutMs: number;
    }
  | { cmd: 'expect'; step: number; /** Flat (connId, item, isRequired 1|0) triples. */ routes: number[]; expectedPerItem: number }
  | { cmd: 'count' }
  | { cmd: 'reconcile'; step: number; /** Acknowledged-send bitmap per global item (null: none). */ acked: (Uint8Array | null)[] }
  | { cmd: 'msgIds'; step: number; keys: [item: number, k: number][] }
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

  /**
   * Forks `count` workers (with extra node flags `execArgv`, e.g. `--cpu-prof`) and initialises them with the
   * target's `endpoints` (one per node).
   */
  static async start(count: number, transport: Transport, endpoints: readonly Endpoint[], localAddresses: string[], execArgv: string[] = []): Promise<WorkerPool> {
    const pool = new WorkerPool();
    const script = fileURLToPath(new URL('./client-worker.ts', import.meta.url));
    for (let i = 0; i < count; i++) {
      const child = fork(script, [], { execArgv: [...execArgv, '--import', 'tsx'], serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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
    await pool.all((i) => ({ cmd: 'init', transport, endpoints: [...endpoints], localAddresses, workerIndex: i + 1 }));
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

  /**
   * Asks every worker to exit and waits for the exits; kills any still running after `graceMs` (a worker
   * writing a `--cpu-prof` profile needs a moment after it answers).
   */
  async close(graceMs = 10_000): Promise<void> {
    const exited = this.children.map((c) => (c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => c.once('exit', () => r()))));
    const timeout = new Promise<void>((r) => setTimeout(r, graceMs).unref());
    await Promise.race([this.all(() => ({ cmd: 'close' })).then(() => Promise.all(exited), () => {}), timeout]);
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}
