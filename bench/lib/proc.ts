/**
 * Bench helpers: spawn a Synchat server process with its own data folder, read a process's memory and CPU
 * from /proc, and make small HTTP calls with a keep-alive agent.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A server process started for a benchmark. */
export interface ServerProcess {
  pid: number;
  url: string;
  httpPort: number;
  tcpPort: number;
  child: ChildProcess;
  /** The SYNCHAT_* settings it was started with besides ports and data folder (bench defaults included), for the record. */
  settings: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * Settings every bench server gets unless the caller overrides them. Scrypt at log2N 10 (the schema's minimum;
 * the server's default is 14, ~40 ms per hash) so registering and logging in thousands of simulated devices takes
 * seconds, not minutes: no measured figure hashes a password (AUTH presents a session id), and the setting is
 * recorded in each result's `targetSettings`. Rate limiting and the connection caps off (a million is past any
 * file limit): the load comes from few loopback addresses.
 */
export const BENCH_SERVER_ENV: Readonly<Record<string, string>> = {
  SYNCHAT_LOG_LEVEL: 'warn',
  SYNCHAT_RATE_LIMIT: 'off',
  SYNCHAT_MAX_CONNS_PER_IP: '1000000',
  SYNCHAT_MAX_CONNS: '1000000',
  SYNCHAT_PASSWORD_LOG2N: '10',
};

/** Starts `src/server/main.ts` with the given SYNCHAT_* settings; resolves when it answers /api/gateways. */
export async function spawnServer(env: Record<string, string>, opts: { httpPort?: number; tcpPort?: number; execArgv?: string[] } = {}): Promise<ServerProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), 'synchat-bench-'));
  const httpPort = opts.httpPort ?? 20000 + Math.floor(Math.random() * 20000);
  const tcpPort = opts.tcpPort ?? httpPort + 1;
  const settings = { ...BENCH_SERVER_ENV, ...env };
  const child = spawn(process.execPath, [...(opts.execArgv ?? []), '--import', 'tsx', 'src/server/main.ts'], {
    env: {
      ...process.env,
      SYNCHAT_HTTP_PORT: String(httpPort),
      SYNCHAT_TCP_PORT: String(tcpPort),
      SYNCHAT_DATA_DIR: dataDir,
      ...settings,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      const r = await fetch(url + '/api/gateways');
      if (r.ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('server did not start within 30 s');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    pid: child.pid!,
    url,
    httpPort,
    tcpPort,
    child,
    settings,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Resident set size of a process, in bytes (from /proc/<pid>/status). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** User+system CPU time of a process, in seconds (from /proc/<pid>/stat). */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Kernel socket memory, in bytes (TCP `mem` pages from /proc/net/sockstat). */
export function kernelTcpBytes(): number {
  const m = /TCP:.* mem (\d+)/.exec(readFileSync('/proc/net/sockstat', 'utf8'));
  return m ? Number(m[1]) * 4096 : 0;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** Closes the idle keep-alive sockets of {@link call} (the next call opens new ones), so a descriptor count of the server does not include them. */
export function dropIdleSockets(): void {
  agent.destroy();
}

/** POST/GET JSON with a keep-alive agent (cheaper than fetch for many small calls). */
export function call(base: string, path: string, body: unknown, sid?: string, method: 'GET' | 'POST' = 'POST'): Promise<any> {
  const url = new URL(path, base);
  const payload = method === 'POST' ? JSON.stringify(body ?? {}) : undefined;
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method,
        agent,
        headers: {
          ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
          ...(sid ? { authorization: `Bearer ${sid}` } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Percentile of a sorted array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Parses `--name value` options. */
export function parseArgs(argv: string[], defaults: Record<string, string>): Record<string, string> {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) continue;
    const key = a.slice(2);
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('--')) {
      out[key] = next;
      i++;
    } else out[key] = 'true';
  }
  return out;
}

/** Pids of a process and all its descendants (gateway workers of a cluster). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      const children = readFileSync(`/proc/${out[i]}/task/${out[i]}/children`, 'utf8').trim();
      if (children) out.push(...children.split(/\s+/).map(Number));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** CPU seconds of a process tree. */
export function treeCpuSeconds(pid: number): number {
  let total = 0;
  for (const p of processTree(pid)) {
    try {
      total += cpuSeconds(p);
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/**
 * Kernel memory held by TCP sockets, in bytes: the slab caches of TCP sockets, their inodes and port buckets
 * (/proc/slabinfo, root only), plus socket buffer pages (/proc/net/sockstat). Idle sockets hold no buffers, so
 * the slabs are most of it.
 */
export function kernelSocketBytes(): number {
  let total = kernelTcpBytes();
  try {
    for (const line of readFileSync('/proc/slabinfo', 'utf8').split('\n')) {
      const f = line.split(/\s+/);
      if (['TCP', 'TCPv6', 'sock_inode_cache', 'tcp_bind_bucket'].includes(f[0]!)) total += Number(f[1]) * Number(f[3]);
    }
  } catch {
    // not root: buffers only
  }
  return total;
}
