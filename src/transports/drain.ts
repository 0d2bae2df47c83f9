/**
 * Draining a gateway (docs/operations.md "Draining and rolling restarts"): every long connection gets ERROR 1102 and
 * every parked long-poll ret 1102, spread evenly over a window in random order, so that the clients of a process
 * do not all come back to the remaining gateways in the same second.
 */
import { RET, RET_INFO } from '../protocol/index.ts';

/** errMsg of ret 1102 (PROTOCOL.md: reconnect, to another gateway if there is one). */
export const GOING_AWAY_ERRMSG = RET_INFO[RET.GOING_AWAY].errMsg;
/** The JSON body of a ret 1102 answer. */
export const GOING_AWAY_BODY = JSON.stringify({ ret: RET.GOING_AWAY, errMsg: GOING_AWAY_ERRMSG });

/** A drain's progress. */
export interface Spread {
  /** Resolves once every action has run (or the spread was stopped). */
  readonly done: Promise<void>;
  /** Actions run so far. */
  readonly fired: number;
  /** Runs every action not yet run now (the window is cut short) and resolves `done`. */
  finishNow(): void;
}

/**
 * Runs `actions` in random order, the k-th of n at `k / n × windowMs` (the first at once), with one timer however
 * many there are; a late timer runs every action already due. `windowMs` 0 runs them all now.
 */
export function spreadOver(actions: readonly (() => void)[], windowMs: number, random: () => number = Math.random): Spread {
  const order = [...actions];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const startMs = Date.now();
  let next = 0;
  let timer: NodeJS.Timeout | undefined;
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  const runDue = (untilIndex: number) => {
    while (next < untilIndex) {
      const act = order[next++]!;
      try {
        act();
      } catch {
        // One connection failing to close must not keep the others from their turn.
      }
    }
    if (next >= order.length) {
      clearTimeout(timer);
      resolve();
      return;
    }
    const dueMs = startMs + (next * windowMs) / order.length;
    timer = setTimeout(() => runDue(Math.min(order.length, Math.floor(((Date.now() - startMs) * order.length) / windowMs) + 1)), Math.max(0, dueMs - Date.now()));
  };
  runDue(windowMs > 0 ? Math.min(1, order.length) : order.length);
  return {
    done,
    get fired() {
      return next;
    },
    finishNow() {
      clearTimeout(timer);
      runDue(order.length);
    },
  };
}
