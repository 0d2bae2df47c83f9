/**
 * The link between gateway processes and the core process (node:cluster's IPC channel, structured-clone
 * serialization). Messages are batched per event-loop turn in both directions. The message types live beside
 * the service API (src/service/api.ts). See docs/architecture.md "Processes".
 */
import type { Worker } from 'node:cluster';
import type {
  AttachReply,
  BusEvent,
  CallContext,
  ChatApi,
  ChatService,
  CoreToGateway,
  GatewayToCore,
  PendingReply,
  Reply,
  Subscription,
} from '../service/index.ts';
import { SubscriptionRegistry, subscriptionOf } from '../service/index.ts';

/** Anything with process-like `send` and `on('message')` (a cluster Worker, or `process` in a worker). */
interface Channel {
  send(message: unknown): boolean;
  on(event: 'message', listener: (message: any) => void): unknown;
}

/** Queues messages and sends them as one array per event-loop turn. */
class Batcher<T> {
  #queue: T[] = [];
  readonly #channel: Channel;
  constructor(channel: Channel) {
    this.#channel = channel;
  }
  push(msg: T): void {
    if (this.#queue.length === 0) setImmediate(() => this.flush());
    this.#queue.push(msg);
  }
  flush(): void {
    if (this.#queue.length === 0) return;
    const batch = this.#queue;
    this.#queue = [];
    try {
      this.#channel.send(batch);
    } catch {
      // The other side is gone; its exit handler cleans up.
    }
  }
}

/** Core side: serves one gateway process. */
export class IpcCoreHost {
  readonly #service: ChatService;
  readonly #out: Batcher<CoreToGateway>;
  /** The users this gateway listens for. */
  readonly #subs = new SubscriptionRegistry();
  /** The gateway's attach id → the subscription it holds. */
  readonly #held = new Map<number, Subscription>();
  /** The gateway's QR poll id → how to stop it (a client that went away). */
  readonly #qrPolls = new Map<number, () => void>();
  readonly #off: () => void;
  readonly #ready: () => Promise<Reply>;
  readonly #adminStats: () => Promise<Reply>;

  /**
   * `ready`: the core's readiness (`/readyz` of a gateway asks it here); `adminStats`: the dashboard's data
   * (`/api/admin/stats` of a gateway asks it here).
   */
  constructor(service: ChatService, worker: Worker, ready: () => Promise<Reply>, adminStats: () => Promise<Reply>) {
    this.#service = service;
    this.#ready = ready;
    this.#adminStats = adminStats;
    this.#out = new Batcher(worker);
    worker.on('message', (batch: GatewayToCore[]) => {
      if (!Array.isArray(batch)) return;
      for (const msg of batch) this.#handle(msg);
    });
    this.#off = service.onEvents((events) => this.#forward(events));
  }

  /** Stops forwarding (the worker exited) and releases what its attaches held (bus holds, catch-up, the count). */
  close(): void {
    this.#off();
    // A gateway that exits (a rolling restart, a crash) sends no detach: without this its users' bus subscriptions
    // and catch-up entries stayed held for the life of the core.
    for (const subscription of this.#held.values()) subscription.release();
    this.#held.clear();
    this.#subs.clear();
    // Its held QR polls stop at once (each holds a slot of the node's bound for up to 30 s) and answer nobody.
    const polls = [...this.#qrPolls.values()];
    this.#qrPolls.clear();
    for (const cancel of polls) cancel();
  }

  #handle(msg: GatewayToCore): void {
    switch (msg.t) {
      case 'call':
        void this.#service.call(msg.path, msg.body, msg.ctx).then((reply) => this.#out.push({ t: 'reply', id: msg.id, reply }));
        break;
      case 'attach':
        void this.#service.attach(msg.sid, msg.syncKey, msg.ip, this.#subs).then(({ subscription, ...reply }) => {
          if (subscription) this.#held.set(msg.id, subscription);
          this.#out.push({ t: 'attached', id: msg.id, reply });
        });
        break;
      case 'checkSession':
        void this.#service.checkSession(msg.sid).then((reply) => this.#out.push({ t: 'reply', id: msg.id, reply }));
        break;
      case 'qrPoll': {
        const poll = this.#service.pollQrLogin(msg.query, msg.ctx);
        this.#qrPolls.set(msg.id, poll.cancel);
        void poll.reply.then((reply) => {
          // Not after close(): the gateway is gone, and a send to an exited worker fails (EPIPE).
          if (this.#qrPolls.delete(msg.id)) this.#out.push({ t: 'reply', id: msg.id, reply });
        });
        break;
      }
      case 'cancelQrPoll':
        this.#qrPolls.get(msg.id)?.();
        break;
      case 'detach':
        this.#held.get(msg.id)?.release();
        this.#held.delete(msg.id);
        break;
      case 'acks':
        for (const [sessionId, syncKey] of msg.acks) this.#service.ack(sessionId, syncKey);
        break;
      case 'ready':
        void this.#ready().then((reply) => this.#out.push({ t: 'reply', id: msg.id, reply }));
        break;
      case 'adminStats':
        void this.#adminStats().then((reply) => this.#out.push({ t: 'reply', id: msg.id, reply }));
        break;
    }
  }

  #forward(events: readonly BusEvent[]): void {
    const mine: BusEvent[] = [];
    for (const ev of events) {
      if (ev.type === 'fanout') {
        // One event per gateway for a group fan-out, carrying only the members this gateway holds.
        const f = ev.fanout;
        const uins: number[] = [];
        const seqs: number[] = [];
        for (let i = 0; i < f.uins.length; i++) {
          if (this.#subs.has(f.uins[i]!)) {
            uins.push(f.uins[i]!);
            seqs.push(f.seqs[i]!);
          }
        }
        if (uins.length === f.uins.length) mine.push(ev);
        else if (uins.length > 0) mine.push({ type: 'fanout', fanout: { ...f, uins, seqs } });
        continue;
      }
      const uin = ev.type === 'news' ? ev.news.uin : ev.ended.uin;
      if (this.#subs.has(uin)) mine.push(ev);
    }
    if (mine.length > 0) this.#out.push({ t: 'events', events: mine });
  }
}

/** How long a gateway gathers acknowledged keys before sending them to the core, in ms. */
const ACK_FLUSH_MS = 200;

/** Gateway side: the ChatApi of a gateway process, served by the core process. */
export class IpcChatClient implements ChatApi {
  readonly #out: Batcher<GatewayToCore>;
  readonly #pending = new Map<number, (v: any) => void>();
  readonly #listeners = new Set<(events: readonly BusEvent[]) => void>();
  readonly #acks = new Map<string, number>();
  #ackTimer: NodeJS.Timeout | undefined;
  #nextId = 1;

  constructor(channel: Channel) {
    this.#out = new Batcher(channel);
    channel.on('message', (batch: CoreToGateway[]) => {
      if (!Array.isArray(batch)) return;
      for (const msg of batch) {
        if (msg.t === 'events') for (const l of this.#listeners) l(msg.events);
        else {
          const resolve = this.#pending.get(msg.id);
          this.#pending.delete(msg.id);
          resolve?.(msg.reply);
        }
      }
    });
  }

  /** Sends the message `make(id)` builds and resolves with the `reply` of that id. */
  #request(make: (id: number) => GatewayToCore): Promise<Reply> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.#out.push(make(id));
    });
  }

  call(path: string, body: unknown, ctx: CallContext): Promise<Reply> {
    return this.#request((id) => ({ t: 'call', id, path, body, ctx }));
  }

  checkSession(sid: string | undefined): Promise<Reply> {
    return this.#request((id) => ({ t: 'checkSession', id, sid }));
  }

  pollQrLogin(query: unknown, ctx: CallContext): PendingReply {
    let id = 0;
    const reply = this.#request((i) => {
      id = i;
      return { t: 'qrPoll', id, query, ctx };
    });
    return { reply, cancel: () => this.#out.push({ t: 'cancelQrPoll', id }) };
  }

  /** The core's readiness (`/readyz`); resolves when the core answers (the caller bounds the wait). */
  ready(): Promise<Reply> {
    return this.#request((id) => ({ t: 'ready', id }));
  }

  /** The admin dashboard's data (`/api/admin/stats`), from the core. */
  adminStats(): Promise<Reply> {
    return this.#request((id) => ({ t: 'adminStats', id }));
  }

  attach(sid: string, syncKey: number | undefined, ip: string): Promise<AttachReply> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#pending.set(id, (reply: AttachReply) => {
        if (reply.ret !== 0) return resolve(reply);
        resolve({ ...reply, subscription: subscriptionOf(() => this.#out.push({ t: 'detach', id })) });
      });
      this.#out.push({ t: 'attach', id, sid, syncKey, ip });
    });
  }

  ack(sessionId: string, syncKey: number): void {
    // Acknowledged keys are bookkeeping (the device list, pruning), written by the core once a second: keep the
    // highest per session and send them together, instead of one IPC message per ACK packet (one per PUSH).
    const prev = this.#acks.get(sessionId);
    if (prev === undefined || syncKey > prev) this.#acks.set(sessionId, syncKey);
    if (this.#ackTimer === undefined) this.#ackTimer = setTimeout(() => this.#flushAcks(), ACK_FLUSH_MS).unref();
  }

  #flushAcks(): void {
    this.#ackTimer = undefined;
    if (this.#acks.size === 0) return;
    this.#out.push({ t: 'acks', acks: [...this.#acks] });
    this.#acks.clear();
  }

  onEvents(listener: (events: readonly BusEvent[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
