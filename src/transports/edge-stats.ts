/**
 * What the edges of one process count for metrics: answers by transport and ret, and news handed to devices. Plain
 * numbers on the hot path (a map increment per answer); src/ops reads them when scraped and owns the Prometheus
 * side. See docs/operations.md "Metrics".
 */

/** The edges whose answers are counted: HTTP calls, long-poll synccheck, and the long connection over TCP or WS. */
export type EdgeTransport = 'http' | 'longpoll' | 'tcp' | 'ws';

const RET_PREFIX = '{"ret":';

/**
 * The `ret` an answer body starts with, or undefined. Every answer the server writes begins `{"ret":N` (the service's
 * replies, `errorBody`, the synccheck answers, AUTH_OK), so one check at the write counts them all, including answers
 * added later, without a count at each place an answer is made.
 */
export function retOfAnswer(body: string): number | undefined {
  if (!body.startsWith(RET_PREFIX)) return undefined;
  let ret = 0;
  let i = RET_PREFIX.length;
  const start = i;
  for (; i < body.length && i < start + 6; i++) {
    const c = body.charCodeAt(i) - 48;
    if (c < 0 || c > 9) break;
    ret = ret * 10 + c;
  }
  return i > start ? ret : undefined;
}

/** Counts of one process's edges. */
export class EdgeStats {
  /** Answers by transport, then ret → count, since start. */
  readonly answers: Readonly<Record<EdgeTransport, Map<number, number>>> = { http: new Map(), longpoll: new Map(), tcp: new Map(), ws: new Map() };
  /** Entries written to devices in PUSH packets, since start. */
  pushedEntries = 0;
  /**
   * Told, in ms, how long after its commit a piece of news reached a device (a PUSH, a NOTIFY, or a parked synccheck
   * answered): set by the composition root when metrics are on.
   */
  onDelivered: ((ms: number) => void) | undefined = undefined;

  /** Counts one answer written by `transport`. */
  answered(transport: EdgeTransport, ret: number): void {
    const m = this.answers[transport];
    m.set(ret, (m.get(ret) ?? 0) + 1);
  }

  /** Counts an answer body (see {@link retOfAnswer}); a body without a leading ret is not an answer. */
  answeredBody(transport: EdgeTransport, body: string): void {
    const ret = retOfAnswer(body);
    if (ret !== undefined) this.answered(transport, ret);
  }

  /** News committed at `committedAt` (ms since the epoch, if known) reached a device, with `entries` entries. */
  delivered(entries: number, committedAt: number | undefined): void {
    this.pushedEntries += entries;
    if (committedAt !== undefined && this.onDelivered) this.onDelivered(Date.now() - committedAt);
  }
}
