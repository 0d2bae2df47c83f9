/**
 * Samples a process tree from /proc: the summed RSS and CPU of a server (its primary and every gateway child),
 * or of the load tool itself, over time. Also reads the kernel's socket memory (slab) so a per-connection figure
 * can count the kernel apart from the process.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { cpuSeconds, rssBytes } from './proc.ts';

/** `pid` and all its descendants (via /proc/<pid>/task/<tid>/children). */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop()!;
    out.push(p);
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue; // exited
    }
    for (const t of tasks) {
      try {
        const kids = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim();
        if (kids) for (const k of kids.split(/\s+/)) stack.push(Number(k));
      } catch {
        // task ended
      }
    }
  }
  return out;
}

/** Summed RSS (bytes) and CPU seconds of a set of pids; pids that exited count 0. */
export function treeUsage(pids: readonly number[]): { rssBytes: number; cpuSeconds: number } {
  let rss = 0;
  let cpu = 0;
  for (const p of pids) {
    try {
      rss += rssBytes(p);
      cpu += cpuSeconds(p);
    } catch {
      // gone
    }
  }
  return { rssBytes: rss, cpuSeconds: cpu };
}

/** Kernel slab memory in bytes (/proc/meminfo Slab): sockets, inodes, epoll items of every open connection. */
export function kernelSlabBytes(): number {
  const m = /^Slab:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** One sample of a process tree. */
export interface UsageSample {
  /** Seconds since the monitor started. */
  t: number;
  rssMiB: number;
  /** CPU used since the previous sample, in cores (1.0 = one core busy). */
  cpuCores: number;
  /** The busiest single process's share (1.0 = a process is saturated: Node runs JavaScript on one core). */
  hottestCores: number;
  processes: number;
}

/** Samples a process tree every `intervalMs`; `pids()` is re-read each time so gateways that start later count. */
export class TreeMonitor {
  readonly samples: UsageSample[] = [];
  peakRssBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #t0 = performance.now();
  #lastT = 0;
  #cpu0 = 0;
  /** CPU seconds of every process seen so far, when last seen (kept when it is missing from a sample). */
  readonly #perPid = new Map<number, number>();

  constructor(
    private readonly pids: () => number[],
    private readonly intervalMs = 500,
  ) {}

  /** Starts sampling (and takes a first sample). */
  start(): this {
    this.#t0 = performance.now();
    const pids = this.pids();
    const u = treeUsage(pids);
    this.#cpu0 = u.cpuSeconds;
    this.#lastT = 0;
    this.peakRssBytes = u.rssBytes;
    for (const p of pids) {
      try {
        this.#perPid.set(p, cpuSeconds(p));
      } catch {
        // gone
      }
    }
    this.#timer = setInterval(() => this.sample(), this.intervalMs);
    this.#timer.unref();
    return this;
  }

  /**
   * Takes one sample now. CPU is summed per process: a process seen before counts what it used since it was last
   * seen, a new one all it used (it started, or joined the set, since), and one that exited or is missing from this
   * sample counts nothing more (a pool's idle PostgreSQL backend closing would otherwise subtract its whole
   * lifetime from the sample, and a process missed by one reading of /proc add it back in the next).
   */
  sample(): UsageSample {
    const pids = this.pids();
    const t = (performance.now() - this.#t0) / 1000;
    const dt = Math.max(1e-3, t - this.#lastT);
    let hottest = 0;
    let cpu = 0;
    let rss = 0;
    let count = 0;
    for (const p of pids) {
      let c: number;
      try {
        c = cpuSeconds(p);
        rss += rssBytes(p);
      } catch {
        continue; // exited
      }
      count++;
      const prev = this.#perPid.get(p);
      this.#perPid.set(p, c);
      cpu += c - (prev ?? 0);
      if (prev !== undefined) hottest = Math.max(hottest, (c - prev) / dt);
    }
    const s = {
      t: +t.toFixed(2),
      rssMiB: +(rss / 2 ** 20).toFixed(1),
      cpuCores: +(cpu / dt).toFixed(3),
      hottestCores: +hottest.toFixed(3),
      processes: count,
    };
    this.#lastT = t;
    if (rss > this.peakRssBytes) this.peakRssBytes = rss;
    this.samples.push(s);
    return s;
  }

  /** CPU seconds used since start. */
  cpuSecondsSinceStart(): number {
    return treeUsage(this.pids()).cpuSeconds - this.#cpu0;
  }

  /** Stops sampling. */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.sample();
  }
}
