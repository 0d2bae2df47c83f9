/**
 * `/readyz` (PROTOCOL.md: `{ret: 0}` when the node can commit and reach its bus, else 503, ret 9): a list of checks
 * run in order, the first failure naming itself in the errMsg. Probes may come every second from several
 * balancers, so one run serves every probe for `cacheMs` after it ends and probes arriving meanwhile share it; the
 * instant checks (draining, a failed store) are read on every probe, so a drain shows at once. See
 * docs/operations.md "Health and readiness".
 */
import { RET } from '../protocol/index.ts';
import type { Reply } from '../service/index.ts';

/** One readiness check: resolves when ready; rejects (or throws) with an Error whose message says what is wrong. */
export type ReadinessCheck = () => Promise<void> | void;

/** Options of {@link Readiness}, with units and defaults. */
export interface ReadinessOptions {
  /** Checked on every probe, in order, without caching (flags already in memory). */
  instant: ReadinessCheck[];
  /** Checked at most once per `cacheMs`, in order, each bounded by `timeoutMs` (they touch the store or Redis). */
  probed: { name: string; check: ReadinessCheck }[];
  /** How long a probed result is reused after it settled, in ms. @default 1000 */
  cacheMs?: number;
  /** A probed check that has not answered within this many ms failed, in ms. @default 2000 */
  timeoutMs?: number;
}

/** The answer of a ready node. */
export const READY_REPLY: Reply = { ret: RET.OK, body: '{"ret":0}' };

/** A not-ready answer: ret 9 with `not ready: <reason>` (the HTTP route answers it with status 503). */
export function notReady(reason: string): Reply {
  return { ret: RET.SERVER_ERROR, body: JSON.stringify({ ret: RET.SERVER_ERROR, errMsg: `not ready: ${reason}` }) };
}

/** Runs readiness checks for `/readyz`, caching the ones that cost a round trip. */
export class Readiness {
  readonly #instant: ReadinessCheck[];
  readonly #probed: { name: string; check: ReadinessCheck }[];
  readonly #cacheMs: number;
  readonly #timeoutMs: number;
  #last: Promise<Reply> | undefined;
  #lastAtMs = 0;
  #isRunning = false;

  constructor(options: ReadinessOptions) {
    this.#instant = options.instant;
    this.#probed = options.probed;
    this.#cacheMs = options.cacheMs ?? 1000;
    this.#timeoutMs = options.timeoutMs ?? 2000;
  }

  /** `{ret: 0}` or ret 9 with the first failed check's reason. Never rejects. */
  async check(): Promise<Reply> {
    for (const check of this.#instant) {
      try {
        await check();
      } catch (err) {
        return notReady((err as Error).message);
      }
    }
    if (!this.#last || (!this.#isRunning && Date.now() - this.#lastAtMs >= this.#cacheMs)) {
      this.#isRunning = true;
      this.#last = this.#runProbed().finally(() => {
        this.#isRunning = false;
        this.#lastAtMs = Date.now();
      });
    }
    return this.#last;
  }

  async #runProbed(): Promise<Reply> {
    for (const { name, check } of this.#probed) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${name} did not answer within ${this.#timeoutMs} ms`)), this.#timeoutMs);
      });
      try {
        await Promise.race([Promise.resolve().then(check), timeout]);
      } catch (err) {
        return notReady((err as Error).message);
      } finally {
        clearTimeout(timer);
      }
    }
    return READY_REPLY;
  }
}
