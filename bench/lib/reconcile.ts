/**
 * Reconciliation of a load step, per (message, receiving device): every acknowledged send must reach every device
 * it is owed to exactly once. Pure bookkeeping, no I/O: the sender's ledger ({@link SendLedger}) records which
 * sends the server acknowledged (SEND_ACK ret 0, with its msgId); the receiver's ledger ({@link DeliveryLedger})
 * records which (message, device) pairs arrived on the wire — before the device filters anything by key — and
 * how; {@link DeliveryLedger.reconcile} compares the two.
 *
 * A message is named by the sender's plan item (a global index the controller gives every sender) and its
 * number `k` among that item's sends in the step; the clientMsgId carries both (`b<step>.<item>.<k>`), so a
 * receiving device can file an entry without any lookup, and a step's state is a bitmap per (device, item) and
 * per item: memory is one bit per expected pair (a 10 s step at 15,000 msgs/s to 2 devices each: 3 × 10^5 bits,
 * 37 KiB), and the controller exchanges one bit per send with each worker (19 KiB), never id lists.
 */

/** How a copy of an entry arrived, as the receiving device classifies it from the wire (see sim-conn.ts). */
export const WireCopy = {
  /** A log position the device had not seen on the wire before. */
  NEW: 0,
  /** A position seen before that the device asked for again (a SYNC from a lower key, an AUTH with a lower key). */
  ASKED_AGAIN: 1,
  /** A position seen before that nobody asked for: a second PUSH of it, or a SYNC page entry at or below the key the page was asked from. */
  UNASKED_AGAIN: 2,
} as const;
export type WireCopy = (typeof WireCopy)[keyof typeof WireCopy];

/** A growable bitmap over 0..n. */
export class BitSet {
  words: Uint32Array;

  constructor(bits = 256) {
    this.words = new Uint32Array(Math.max(1, Math.ceil(bits / 32)));
  }

  /** Builds one over the bytes of {@link toBytes}. */
  static fromBytes(bytes: Uint8Array): BitSet {
    const s = new BitSet(0);
    const words = new Uint32Array(Math.max(1, Math.ceil(bytes.length / 4)));
    new Uint8Array(words.buffer).set(bytes);
    s.words = words;
    return s;
  }

  /** Sets bit `i`; returns whether it was set already. */
  set(i: number): boolean {
    const w = i >>> 5;
    if (w >= this.words.length) {
      const grown = new Uint32Array(Math.max(w + 1, this.words.length * 2));
      grown.set(this.words);
      this.words = grown;
    }
    const mask = 1 << (i & 31);
    const was = (this.words[w]! & mask) !== 0;
    this.words[w]! |= mask;
    return was;
  }

  /** Whether bit `i` is set. */
  has(i: number): boolean {
    const w = i >>> 5;
    return w < this.words.length && (this.words[w]! & (1 << (i & 31))) !== 0;
  }

  /** Bits set. */
  count(): number {
    let n = 0;
    for (let i = 0; i < this.words.length; i++) n += popcount(this.words[i]!);
    return n;
  }

  /** The bitmap as bytes (little-endian words), trimmed after the last set bit, for IPC. */
  toBytes(): Uint8Array {
    let last = this.words.length - 1;
    while (last >= 0 && this.words[last] === 0) last--;
    return new Uint8Array(this.words.buffer, 0, (last + 1) * 4).slice();
  }
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** Bits set in `a` and not in `b` (b may be missing: every bit of a). */
function countAndNot(a: Uint32Array, b: Uint32Array | undefined): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) n += popcount(a[i]! & ~(b && i < b.length ? b[i]! : 0));
  return n;
}

/** Up to `max` indexes of bits set in `a` and not in `b`. */
function firstAndNot(a: Uint32Array, b: Uint32Array | undefined, max: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.length && out.length < max; i++) {
    let x = a[i]! & ~(b && i < b.length ? b[i]! : 0);
    while (x !== 0 && out.length < max) {
      const bit = 31 - Math.clz32(x & -x);
      out.push(i * 32 + bit);
      x &= x - 1;
    }
  }
  return out;
}

/** The clientMsgId of send `k` of plan item `item` in step `step`: `b<step>.<item>.<k>`. */
export function stepClientMsgId(step: number, item: number, k: number): string {
  return stepClientMsgIdPrefix(step, item) + k;
}

/** What every clientMsgId of plan item `item` in step `step` starts with (the sender appends `k`). */
export function stepClientMsgIdPrefix(step: number, item: number): string {
  return `b${step}.${item}.`;
}

/** Where {@link parseStepClientMsgId} writes. */
export interface StepMsgKey {
  step: number;
  item: number;
  k: number;
}

/** Reads a {@link stepClientMsgId}; false for any other clientMsgId (set-up traffic, other scenarios). */
export function parseStepClientMsgId(id: string, out: StepMsgKey): boolean {
  if (id.charCodeAt(0) !== 98 /* b */) return false;
  let field = 0;
  let n = 0;
  let digits = 0;
  for (let i = 1; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      n = n * 10 + (c - 48);
      digits++;
    } else if (c === 46 /* . */ && digits > 0 && field < 2) {
      if (field === 0) out.step = n;
      else out.item = n;
      field++;
      n = 0;
      digits = 0;
    } else return false;
  }
  if (field !== 2 || digits === 0) return false;
  out.k = n;
  return true;
}

/**
 * A sender's record of one step: per plan item, which sends were acknowledged (SEND_ACK ret 0) and with which
 * msgId, which failed (an answer with ret ≠ 0, or the connection closed first), and how many were issued. A send
 * neither acknowledged nor failed when the step's drain deadline passes is unanswered.
 */
export class SendLedger {
  readonly #issued: number[];
  readonly #acked: BitSet[];
  readonly #failed: BitSet[];
  readonly #msgIds: Float64Array[];

  constructor(readonly step: number, readonly firstItem: number, items: number, expectedPerItem: number) {
    this.#issued = new Array<number>(items).fill(0);
    this.#acked = Array.from({ length: items }, () => new BitSet(expectedPerItem + 64));
    this.#failed = Array.from({ length: items }, () => new BitSet(64));
    this.#msgIds = Array.from({ length: items }, () => new Float64Array(expectedPerItem + 64));
  }

  /** Takes the next send number of local item `i`. */
  issue(i: number): number {
    return this.#issued[i]!++;
  }

  /** SEND_ACK ret 0 for send `k` of local item `i`; `msgId` NaN when the answer carried none. */
  ack(i: number, k: number, msgId: number): void {
    this.#acked[i]!.set(k);
    let ids = this.#msgIds[i]!;
    if (k >= ids.length) {
      const grown = new Float64Array(Math.max(k + 1, ids.length * 2));
      grown.set(ids);
      this.#msgIds[i] = ids = grown;
    }
    ids[k] = msgId;
  }

  /** A failed send (error answer or closed connection). */
  fail(i: number, k: number): void {
    this.#failed[i]!.set(k);
  }

  /** The msgId SEND_ACK gave send `k` of global item `item` (NaN if unknown). */
  msgIdOf(item: number, k: number): number {
    const ids = this.#msgIds[item - this.firstItem];
    return ids && k < ids.length && this.#acked[item - this.firstItem]!.has(k) ? ids[k]! : NaN;
  }

  /** Per local item: sends issued, acknowledged and failed, and the acknowledged bitmap (for IPC). */
  summary(): { issuedPerPlan: number[]; ackedPerPlan: number[]; failedPerPlan: number[]; ackedBits: Uint8Array[] } {
    return {
      issuedPerPlan: this.#issued.slice(),
      ackedPerPlan: this.#acked.map((b) => b.count()),
      failedPerPlan: this.#failed.map((b) => b.count()),
      ackedBits: this.#acked.map((b) => b.toBytes()),
    };
  }
}

/** One expected (device, item) pair: `isRequired` false for the sending device itself (its own echo). */
export interface Route {
  connId: number;
  item: number;
  isRequired: boolean;
}

/** A (clientMsgId, device) sample for the report. */
export interface PairSample {
  connId: number;
  item: number;
  k: number;
  /** The clientMsgId. */
  clientMsgId: string;
  /** The msgId SEND_ACK gave (filled in by the controller from the sender; '' when unknown). */
  msgId?: string;
}

/** What a reconciliation found; counts add up over workers ({@link mergeReconciliations}). */
export interface Reconciliation {
  /** Acknowledged (msg, device) pairs owed: acknowledged sends × devices each is owed to. */
  expectedPairs: number;
  /** Owed pairs that arrived at least once. */
  deliveredPairs: number;
  /** Owed pairs that never arrived. */
  lost: number;
  /** Extra copies of a pair the device already held that it did not ask for again (a second PUSH, a SYNC page entry at or below the asked key) or that came as a new log position (a message committed twice). */
  duplicates: number;
  /** Extra copies the device asked for again (a SYNC from a key below entries it had seen pushed): normal, not counted as duplicates. */
  refetched: number;
  /** Pairs that arrived for sends never acknowledged (unanswered or failed). */
  deliveredUnacked: number;
  /** Pairs that arrived at a device no route named (a message delivered where it was not owed). */
  unexpected: number;
  /** Copies of a sender's own message on the sending device (not owed: the device had SEND_ACK). */
  ownEchoes: number;
  /** Entries of an earlier step that arrived during this one. */
  lateCopies: number;
  lostSamples: PairSample[];
  /** Devices (connIds) that missed at least one owed pair, at most {@link MAX_LOST_DEVICES}. */
  lostDevices: number[];
  duplicateSamples: PairSample[];
  unexpectedSamples: PairSample[];
}

/** Samples kept per kind and worker. */
export const MAX_SAMPLES = 5;
/** Devices with losses named per step (all workers together). */
export const MAX_LOST_DEVICES = 50;

/** An empty {@link Reconciliation}. */
export function emptyReconciliation(): Reconciliation {
  return { expectedPairs: 0, deliveredPairs: 0, lost: 0, duplicates: 0, refetched: 0, deliveredUnacked: 0, unexpected: 0, ownEchoes: 0, lateCopies: 0, lostSamples: [], lostDevices: [], duplicateSamples: [], unexpectedSamples: [] };
}

/** Adds workers' reconciliations. */
export function mergeReconciliations(parts: readonly Reconciliation[]): Reconciliation {
  const out = emptyReconciliation();
  for (const p of parts) {
    for (const k of ['expectedPairs', 'deliveredPairs', 'lost', 'duplicates', 'refetched', 'deliveredUnacked', 'unexpected', 'ownEchoes', 'lateCopies'] as const) out[k] += p[k];
    out.lostSamples.push(...p.lostSamples);
    out.lostDevices.push(...(p.lostDevices ?? []));
    out.duplicateSamples.push(...p.duplicateSamples);
    out.unexpectedSamples.push(...p.unexpectedSamples);
  }
  out.lostSamples.length = Math.min(out.lostSamples.length, MAX_SAMPLES);
  out.lostDevices.length = Math.min(out.lostDevices.length, MAX_LOST_DEVICES);
  out.duplicateSamples.length = Math.min(out.duplicateSamples.length, MAX_SAMPLES);
  out.unexpectedSamples.length = Math.min(out.unexpectedSamples.length, MAX_SAMPLES);
  return out;
}

interface PairTrack {
  readonly item: number;
  readonly isRequired: boolean;
  readonly seen: BitSet;
}

/**
 * A worker's receiving side of one step: the routes of its devices, then every step-message copy that arrives
 * on the wire. `pairsSeen` (first copies on owed pairs) is the drain's progress figure.
 */
export class DeliveryLedger {
  /** First copies on owed pairs (acknowledged or not). */
  pairsSeen = 0;
  readonly #byConn = new Map<number, Map<number, PairTrack>>();
  readonly #key: StepMsgKey = { step: 0, item: 0, k: 0 };
  #duplicates = 0;
  #refetched = 0;
  #unexpected = 0;
  #ownEchoes = 0;
  #late = 0;
  readonly #duplicateSamples: PairSample[] = [];
  readonly #unexpectedSamples: PairSample[] = [];
  readonly #unexpectedSeen = new Set<string>();

  /** `routes`: flat triples (connId, item, isRequired ? 1 : 0) for this worker's devices. */
  constructor(readonly step: number, routes: ArrayLike<number>, expectedPerItem = 256) {
    for (let i = 0; i + 2 < routes.length; i += 3) {
      const connId = routes[i]!;
      let m = this.#byConn.get(connId);
      if (!m) this.#byConn.set(connId, (m = new Map()));
      m.set(routes[i + 1]!, { item: routes[i + 1]!, isRequired: routes[i + 2] === 1, seen: new BitSet(expectedPerItem + 64) });
    }
  }

  /**
   * A message entry arrived at device `connId` on the wire. Returns false for entries that are not this step's
   * load (set-up traffic, other scenarios), which the caller may count elsewhere.
   */
  onEntry(connId: number, clientMsgId: string, copy: WireCopy): boolean {
    const key = this.#key;
    if (!parseStepClientMsgId(clientMsgId, key)) return false;
    if (key.step !== this.step) {
      this.#late++;
      return true;
    }
    const track = this.#byConn.get(connId)?.get(key.item);
    if (!track) {
      // Counted per copy; sampled once per pair.
      this.#unexpected++;
      if (this.#unexpectedSamples.length < MAX_SAMPLES && !this.#unexpectedSeen.has(clientMsgId + '@' + connId)) {
        this.#unexpectedSeen.add(clientMsgId + '@' + connId);
        this.#unexpectedSamples.push({ connId, item: key.item, k: key.k, clientMsgId });
      }
      return true;
    }
    if (!track.seen.set(key.k)) {
      if (track.isRequired) this.pairsSeen++;
      else this.#ownEchoes++;
      return true;
    }
    if (copy === WireCopy.ASKED_AGAIN) this.#refetched++;
    else {
      this.#duplicates++;
      if (this.#duplicateSamples.length < MAX_SAMPLES) this.#duplicateSamples.push({ connId, item: key.item, k: key.k, clientMsgId });
    }
    return true;
  }

  /**
   * Compares with the senders' acknowledgements: `ackedByItem[item]` is item's acknowledged-send bitmap
   * ({@link BitSet.toBytes}; missing = none acknowledged).
   */
  reconcile(ackedByItem: readonly (Uint8Array | null | undefined)[]): Reconciliation {
    const r = emptyReconciliation();
    const acked = new Map<number, Uint32Array>();
    const ackedOf = (item: number): Uint32Array | undefined => {
      let a = acked.get(item);
      if (!a) {
        const bytes = ackedByItem[item];
        if (!bytes) return undefined;
        acked.set(item, (a = BitSet.fromBytes(bytes).words));
      }
      return a;
    };
    for (const [connId, tracks] of this.#byConn) {
      const lostBefore = r.lost;
      for (const t of tracks.values()) {
        const a = ackedOf(t.item);
        const seen = t.seen.words;
        r.deliveredUnacked += countAndNot(seen, a);
        if (!t.isRequired || !a) continue;
        const owed = countAndNot(a, undefined);
        const missing = countAndNot(a, seen);
        r.expectedPairs += owed;
        r.deliveredPairs += owed - missing;
        r.lost += missing;
        if (missing > 0 && r.lostSamples.length < MAX_SAMPLES) {
          for (const k of firstAndNot(a, seen, MAX_SAMPLES - r.lostSamples.length)) r.lostSamples.push({ connId, item: t.item, k, clientMsgId: stepClientMsgId(this.step, t.item, k) });
        }
      }
      if (r.lost > lostBefore && r.lostDevices.length < MAX_LOST_DEVICES) r.lostDevices.push(connId);
    }
    r.duplicates = this.#duplicates;
    r.refetched = this.#refetched;
    r.unexpected = this.#unexpected;
    r.ownEchoes = this.#ownEchoes;
    r.lateCopies = this.#late;
    r.duplicateSamples = this.#duplicateSamples.slice();
    r.unexpectedSamples = this.#unexpectedSamples.slice();
    return r;
  }
}
