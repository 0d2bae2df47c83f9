/**
 * What the dashboard remembers: per node, the last {@link HISTORY_POINTS} snapshots and the rates between them, in
 * rings, so memory stays bounded however long the page is open. A node unseen for {@link FORGET_NODE_MS} is
 * forgotten (it stopped, or left the directory).
 */
import type { NodeReport } from '../../../src/ops/admin-stats.ts';
import { rateBetween, type RateSample } from '../../../src/ops/live-capacity.ts';
import type { NodeSnapshot } from '../../../src/ops/snapshot.ts';

/** Points per chart line: five minutes at one a second. */
export const HISTORY_POINTS = 300;
/** A node absent from the answers this long leaves the page, in ms. */
const FORGET_NODE_MS = 30_000;

/** A fixed-size ring: pushing past the size drops the oldest. */
export class Ring<T> {
  readonly #items: T[] = [];
  readonly #size: number;
  constructor(size: number) {
    this.#size = size;
  }
  push(item: T): void {
    this.#items.push(item);
    if (this.#items.length > this.#size) this.#items.splice(0, this.#items.length - this.#size);
  }
  get last(): T | undefined {
    return this.#items.at(-1);
  }
  get length(): number {
    return this.#items.length;
  }
  /** Oldest first. */
  toArray(): readonly T[] {
    return this.#items;
  }
}

/** One node's memory. */
export interface NodeHistory {
  report: NodeReport;
  snapshots: Ring<NodeSnapshot>;
  rates: Ring<RateSample>;
  /** Date.now() when this page last saw the node. */
  seenAt: number;
}

/** Every node's memory, fed by each answer of `/api/admin/stats`. */
export class History {
  readonly #nodes = new Map<string, NodeHistory>();

  /** Takes one answer's reports. A snapshot already held (another node's, published once a second) is not taken twice. */
  add(reports: readonly NodeReport[], now = Date.now()): void {
    for (const report of reports) {
      const s = report.snapshot;
      let h = this.#nodes.get(s.nodeId);
      if (!h || h.snapshots.last?.startedAt !== s.startedAt) {
        // New, or restarted: its counters began again, so rates across the restart mean nothing.
        h = { report, snapshots: new Ring(HISTORY_POINTS), rates: new Ring(HISTORY_POINTS), seenAt: now };
        this.#nodes.set(s.nodeId, h);
      }
      h.seenAt = now;
      h.report = report;
      const prev = h.snapshots.last;
      if (prev && s.at <= prev.at) continue;
      h.snapshots.push(s);
      const rate = prev && rateBetween(prev, s);
      if (rate) h.rates.push(rate);
    }
    for (const [id, h] of this.#nodes) if (now - h.seenAt > FORGET_NODE_MS) this.#nodes.delete(id);
  }

  /** The nodes, in the order of the last answer that listed them (the answering node first). */
  nodes(order: readonly NodeReport[]): NodeHistory[] {
    const listed = order.map((r) => this.#nodes.get(r.snapshot.nodeId)).filter((h): h is NodeHistory => h !== undefined);
    const rest = [...this.#nodes.values()].filter((h) => !listed.includes(h));
    return [...listed, ...rest];
  }
}
