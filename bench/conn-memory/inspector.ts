/**
 * Reads a Node process's memory from the inside through its inspector (the server runs with `--inspect`): a full
 * GC first, then `process.memoryUsage()`, so per-connection figures are live objects, not garbage waiting for
 * the next collection. Used by bench/scenarios/conn-memory.ts and the soak (bench/soak/soak.ts).
 */
import WebSocket from 'ws';

/** `process.memoryUsage()` of the inspected process after a full GC, plus its pid. */
export interface InspectedMemory {
  pid: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

/** A connection to one process's inspector. */
export class Inspector {
  readonly #ws: WebSocket;
  #id = 0;
  readonly #pending = new Map<number, (v: any) => void>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.on('message', (data: Buffer) => {
      const m = JSON.parse(data.toString('utf8'));
      if (m.id !== undefined) {
        this.#pending.get(m.id)?.(m);
        this.#pending.delete(m.id);
      }
    });
  }

  /** Connects to the inspector listening on `port` (retries while the process starts). */
  static async open(port: number, timeoutMs = 30_000): Promise<Inspector> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
        const ws = new WebSocket(list[0]!.webSocketDebuggerUrl, { perMessageDeflate: false, maxPayload: 64 * 2 ** 20 });
        await new Promise((resolve, reject) => {
          ws.once('open', resolve);
          ws.once('error', reject);
        });
        return new Inspector(ws);
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`no inspector on port ${port}: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  #send(method: string, params: Record<string, unknown> = {}): Promise<any> {
    const id = ++this.#id;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`inspector ${method} timed out`)), 120_000);
      this.#pending.set(id, (m) => {
        clearTimeout(timer);
        if (m.error) reject(new Error(`${method}: ${m.error.message}`));
        else resolve(m.result);
      });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Full GC (unless `gc` is false: the heap as it stands, garbage included), then memoryUsage(). */
  async memory(options: { gc?: boolean } = {}): Promise<InspectedMemory> {
    if (options.gc !== false) {
      await this.#send('HeapProfiler.collectGarbage');
      await this.#send('HeapProfiler.collectGarbage');
    }
    const r = await this.#send('Runtime.evaluate', {
      expression: 'JSON.stringify({ pid: process.pid, ...process.memoryUsage() })',
      returnByValue: true,
    });
    return JSON.parse(r.result.value) as InspectedMemory;
  }

  close(): void {
    this.#ws.terminate();
  }
}
