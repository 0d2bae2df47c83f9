/**
 * Connection caps of one gateway process (`SYNCHAT_MAX_CONNS_PER_IP`, `SYNCHAT_MAX_CONNS`; docs/protocol.md
 * "Connection limits"): every socket a listener accepts — an HTTP socket (keep-alive, and `/ws` after its upgrade:
 * the same socket), a TCP long connection — asks {@link ConnectionCaps.admit} and holds what it gets until it
 * closes. With TLS that is the raw socket, from its accept: a handshake in progress holds a file too. The address
 * is the socket's peer: behind a proxy that is the proxy, which must cap per client itself — so a trusted proxy's
 * sockets (`SYNCHAT_TRUST_PROXY`) are not held to the per-address cap, only to the total. Each process counts its
 * own sockets (in cluster mode every gateway has the whole cap).
 */
import { isIPv6, type Socket } from 'node:net';
import { RET } from '../protocol/index.ts';

/** Why a socket was refused, and the answer it gets: ret 1205 on every transport; HTTP 429 or 503. */
export interface Refusal {
  ret: typeof RET.RATE_LIMITED;
  /** 429 (this address holds too many) or 503 (this process is full). */
  httpStatus: 429 | 503;
  errMsg: string;
}

/**
 * What {@link ConnectionCaps.admit} hands out: a counted slot, admitted or refused (a refused socket is counted
 * apart while it is being answered). `release()` is the only way to give the slot back; it may be called any
 * number of times and counts once.
 */
export interface Admission {
  /** Undefined: admitted. Else: answer this, then close. */
  readonly refusal: Refusal | undefined;
  release(): void;
}

/**
 * Refused sockets held at once while they get their answer (an ERROR packet, a 429/503 page); past it a refused
 * socket is dropped without one. They live seconds (the TCP linger, the HTTP header timeout), and each holds a
 * file: this bounds the files a flood of refused connections can hold on top of `SYNCHAT_MAX_CONNS`.
 */
export const MAX_REFUSING = 1000;

/**
 * The counting key of an address: an IPv4 address as is (also in its IPv6-mapped form, so a dual-stack listener
 * counts it once); an IPv6 address by its /64 prefix, the block one subscriber is given (RFC 6177), since one
 * client may use any address of it.
 */
export function addressKey(address: string): string {
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7);
  if (!isIPv6(address)) return address;
  const [head = '', tail] = address.toLowerCase().split('%')[0]!.split('::') as [string, string?];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':') + '::/64';
}

/** One open socket among those of a process: its peer's address and port and its local port. */
function peerKey(socket: Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}|${socket.localPort}`;
}

/** The counts of one process. */
export class ConnectionCaps {
  readonly maxPerAddress: number;
  readonly maxTotal: number;
  readonly #byAddress = new Map<string, number>();
  #total = 0;
  #refusing = 0;
  readonly #refused = new WeakMap<object, Refusal>();
  /** Refused raw sockets by {@link peerKey}, for the TLS socket that wraps one (the same peer and local port). */
  readonly #refusedPeers = new Map<string, Refusal>();

  readonly #isExempt: (address: string) => boolean;

  /**
   * `isExempt`: peers not held to `maxPerAddress` (still counted, and held to `maxTotal`): trusted proxies, whose
   * sockets carry many clients; capping them per address would let one client behind the proxy lock out all the
   * others. @default none
   */
  constructor(opts: { maxPerAddress: number; maxTotal: number; isExempt?: (address: string) => boolean }) {
    this.maxPerAddress = opts.maxPerAddress;
    this.maxTotal = opts.maxTotal;
    this.#isExempt = opts.isExempt ?? (() => false);
  }

  /** Admitted sockets open now. */
  get total(): number {
    return this.#total;
  }

  /** Refused sockets still being answered. */
  get refusing(): number {
    return this.#refusing;
  }

  /** Admitted sockets open now from `address` (its key's). */
  countOf(address: string): number {
    return this.#byAddress.get(addressKey(address)) ?? 0;
  }

  /**
   * Counts a new socket from `address`: admitted, or refused with the answer to give it; undefined when it is over
   * a cap and {@link MAX_REFUSING} refused sockets are already being answered (drop it at once).
   */
  admit(address: string): Admission | undefined {
    const key = addressKey(address);
    const held = this.#byAddress.get(key) ?? 0;
    let refusal: Refusal | undefined;
    if (held >= this.maxPerAddress && !this.#isExempt(address)) {
      refusal = { ret: RET.RATE_LIMITED, httpStatus: 429, errMsg: `too many connections from your address (at most ${this.maxPerAddress}): close some and retry` };
    } else if (this.#total >= this.maxTotal) {
      refusal = { ret: RET.RATE_LIMITED, httpStatus: 503, errMsg: `this server holds its most connections (${this.maxTotal}): retry later, or another gateway` };
    }
    if (refusal) {
      if (this.#refusing >= MAX_REFUSING) return undefined;
      this.#refusing++;
      return this.#handle(refusal, () => this.#refusing--);
    }
    this.#byAddress.set(key, held + 1);
    this.#total++;
    return this.#handle(undefined, () => {
      this.#total--;
      const n = this.#byAddress.get(key)! - 1;
      if (n === 0) this.#byAddress.delete(key);
      else this.#byAddress.set(key, n);
    });
  }

  /**
   * {@link admit} for a socket for its lifetime: the slot is released when it closes. Undefined: the socket was
   * destroyed (no slot left even to refuse it). A refused socket is remembered for {@link refusalOf}.
   */
  hold(socket: Socket): Admission | undefined {
    const admission = this.admit(socket.remoteAddress ?? '');
    if (!admission) {
      socket.destroy();
      return undefined;
    }
    const { refusal } = admission;
    if (!refusal) {
      socket.once('close', () => admission.release());
      return admission;
    }
    this.#refused.set(socket, refusal);
    const peer = peerKey(socket);
    this.#refusedPeers.set(peer, refusal);
    socket.once('close', () => {
      admission.release();
      this.#refusedPeers.delete(peer);
    });
    return admission;
  }

  /**
   * The refusal a socket got from {@link hold}, if it was refused: answer it, then close. A TLS socket is looked up
   * by its raw socket's peer and local port: the raw socket was held at its accept, before the handshake.
   */
  refusalOf(socket: Socket): Refusal | undefined {
    return this.#refused.get(socket) ?? (this.#refusedPeers.size > 0 ? this.#refusedPeers.get(peerKey(socket)) : undefined);
  }

  #handle(refusal: Refusal | undefined, undo: () => void): Admission {
    let isHeld = true;
    return {
      refusal,
      release() {
        if (!isHeld) return;
        isHeld = false;
        undo();
      },
    };
  }
}
