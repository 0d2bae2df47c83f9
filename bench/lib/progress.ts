/**
 * The live progress line: a bar, the phase and a status text, redrawn in place on a terminal (every 250 ms)
 * and printed as plain lines every 5 s otherwise (CI logs).
 */
const isTty = process.stderr.isTTY === true;

/** A progress line for one phase of a run. */
export class Progress {
  #timer: NodeJS.Timeout | undefined;
  #t0 = performance.now();
  #lastPlain = 0;

  constructor(
    private phase: string,
    private total: number,
    private status: () => { done: number; text?: string },
  ) {}

  /** Starts redrawing. */
  start(): this {
    this.#t0 = performance.now();
    this.#timer = setInterval(() => this.#draw(false), isTty ? 250 : 1000);
    this.#timer.unref();
    return this;
  }

  #draw(final: boolean): void {
    const { done, text } = this.status();
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 0;
    const width = 24;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const secs = ((performance.now() - this.#t0) / 1000).toFixed(1);
    const line = `[${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${this.phase} ${done}/${this.total} ${secs}s ${text ?? ''}`;
    if (isTty) process.stderr.write(`\r\x1b[K${line}${final ? '\n' : ''}`);
    else if (final || performance.now() - this.#lastPlain > 5000) {
      this.#lastPlain = performance.now();
      process.stderr.write(line + '\n');
    }
  }

  /** Draws the last state and stops. */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#draw(true);
  }
}

/** Runs `fn` with a progress line. */
export async function withProgress<T>(phase: string, total: number, status: () => { done: number; text?: string }, fn: () => Promise<T>): Promise<T> {
  const p = new Progress(phase, total, status).start();
  try {
    return await fn();
  } finally {
    p.stop();
  }
}
