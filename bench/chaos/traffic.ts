/**
 * The chaos runner's traffic: SDK clients in groups by transport (TCP, WebSocket, HTTP long-poll), two devices per
 * user to start with, each user a loop of random operations (one-to-one sends, group sends, image uploads, contact
 * requests and accepts, logins of another device). Every send carries a clientMsgId and its answer is recorded.
 * Clients keep retrying through the SDK outbox (a large attempt budget: a send is never given up on because the
 * server was down), so once traffic stops every send ends answered or refused.
 */
import sharp from 'sharp';
import { MSG_TYPE, type Entry } from '../../src/protocol/index.ts';
import { SynchatClient, type ClientOptions, type TransportName } from '../../src/sdk/index.ts';
import { nodeWebSocketConnector, tcpConnector } from '../../src/sdk/node/index.ts';
import { newClientMsgId } from '../../src/sdk/client/outbox.ts';
import { WireLog } from './wire-log.ts';

/** A device of a user and what its client applied, in order. */
export interface Device {
  user: User;
  deviceId: string;
  client: SynchatClient;
  /** Entries applied by the client (cleared on an epoch reset). */
  entries: Entry[];
  /** Its long connections' sync-related packets (the report of a device that diverged). */
  wire: WireLog;
}

/** A user of the run; its devices all use the user's transport. */
export interface User {
  name: string;
  transport: TransportName;
  devices: Device[];
  contacts: Set<string>;
  groups: string[];
}

/** One send and its outcome. */
export interface SendRecord {
  clientMsgId: string;
  from: string;
  /** The recipient's username or a group id. */
  to: string;
  kind: 'direct' | 'group' | 'image';
  transport: TransportName;
  /** Set once answered ret 0 (SEND_ACK, sendmsg, or its own entry in the log). */
  answer?: { msgId: string; seq: number; duplicate: boolean; attempts: number };
  /** Set when refused (the outbox turned it `failed`). */
  refused?: { ret: number; errMsg: string };
}

/** Counters of the non-send operations. */
export interface OpCounts {
  uploadsFailed: number;
  loginsOk: number;
  loginsFailed: number;
  contactsOk: number;
  contactsFailed: number;
}

/** Everything the traffic did. */
export interface Traffic {
  users: User[];
  groups: Map<string, string[]>;
  sends: SendRecord[];
  pending: Set<Promise<unknown>>;
  ops: OpCounts;
}

const TRANSPORTS: TransportName[] = ['tcp', 'ws', 'http'];
/** Added devices per run at most (logins during traffic). */
const MAX_EXTRA_DEVICES = 6;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function clientOptions(transport: TransportName, urls: string[], index: number, wire?: WireLog): ClientOptions {
  const connectors = transport === 'tcp' ? [tcpConnector()] : transport === 'ws' ? [nodeWebSocketConnector()] : [];
  return {
    baseUrl: urls[index % urls.length]!,
    bootstrapUrls: urls,
    connectors: wire ? connectors.map((c) => wire.wrap(c)) : connectors,
    // Short backoffs and gateway penalties: a restarted node is back within seconds, and the run is short.
    backoff: { baseMs: 50, maxMs: 500 },
    failedGatewayMs: 2_000,
    longConnectionRetryMs: 300,
    synccheckTimeoutMs: 5_000,
    // Never give up on a send because the server was down: it ends answered or refused.
    maxSendAttempts: 1_000_000,
  };
}

async function openDevice(user: User, deviceId: string, urls: string[], index: number): Promise<Device> {
  const wire = new WireLog();
  const client = new SynchatClient(clientOptions(user.transport, urls, index, wire));
  await client.login(user.name, `password-${user.name}`, { deviceId });
  const device: Device = { user, deviceId, client, entries: [], wire };
  client.on('entry', (e) => device.entries.push(e));
  client.on('reset', () => (device.entries = []));
  await client.start();
  return device;
}

/** A small PNG of one random colour (different bytes each time, so no upload is answered "already stored"). */
function randomPng(random: () => number): Promise<Buffer> {
  const c = () => Math.floor(random() * 256);
  return sharp({ create: { width: 8, height: 8, channels: 3, background: { r: c(), g: c(), b: c() } } }).png().toBuffer();
}

/**
 * Registers `perTransport` users per transport with two devices each, befriends them in a ring, and creates one
 * group per transport (its owner and the owner's two ring neighbours). Runs before any fault.
 */
export async function setupTraffic(urls: string[], perTransport: number): Promise<Traffic> {
  const users: User[] = [];
  for (const transport of TRANSPORTS) {
    for (let i = 0; i < perTransport; i++) users.push({ name: `${transport}_${i}`, transport, devices: [], contacts: new Set(), groups: [] });
  }
  for (const [i, user] of users.entries()) {
    const c = new SynchatClient(clientOptions(user.transport, urls, i));
    await c.register(user.name, `password-${user.name}`, user.name.toUpperCase());
    for (const d of ['a', 'b']) user.devices.push(await openDevice(user, d, urls, i));
  }
  for (const [i, user] of users.entries()) {
    const next = users[(i + 1) % users.length]!;
    await user.devices[0]!.client.requestContact(next.name, 'chaos');
    await next.devices[0]!.client.acceptContact(user.name);
    user.contacts.add(next.name);
    next.contacts.add(user.name);
  }
  const groups = new Map<string, string[]>();
  for (let i = 0; i < users.length; i += perTransport) {
    const owner = users[i]!;
    const members = [users[(i + users.length - 1) % users.length]!, users[(i + 1) % users.length]!];
    const groupId = await owner.devices[0]!.client.createGroup(`group ${owner.name}`, members.map((m) => m.name));
    groups.set(groupId, [owner, ...members].map((m) => m.name));
    for (const m of [owner, ...members]) m.groups.push(groupId);
  }
  return { users, groups, sends: [], pending: new Set(), ops: { uploadsFailed: 0, loginsOk: 0, loginsFailed: 0, contactsOk: 0, contactsFailed: 0 } };
}

/** Queues a send through a device's outbox and records its outcome when it comes. */
async function send(t: Traffic, device: Device, record: Omit<SendRecord, 'clientMsgId' | 'from' | 'transport'>, content: string, type: number = MSG_TYPE.TEXT, mediaId?: string): Promise<void> {
  const rec: SendRecord = { ...record, clientMsgId: newClientMsgId(), from: device.user.name, transport: device.user.transport };
  t.sends.push(rec);
  const p = device.client
    .sendMessage({ to: rec.to, type, content, clientMsgId: rec.clientMsgId, ...(mediaId ? { mediaId } : {}) })
    .then(
      (item) => void (rec.answer = { msgId: item.msgId!, seq: item.seq!, duplicate: !!item.duplicate, attempts: item.attempts }),
      (err) => void (rec.refused = { ret: err.ret ?? -1, errMsg: err.message }),
    );
  t.pending.add(p);
  void p.finally(() => t.pending.delete(p));
}

/** One user's loop of random operations until `stopAt` (ms since the epoch). */
async function userLoop(t: Traffic, user: User, urls: string[], random: () => number, stopAt: number): Promise<void> {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  let n = 0;
  while (Date.now() < stopAt) {
    await sleep(40 + random() * 100);
    const device = pick(user.devices);
    const r = random();
    n++;
    if (r < 0.5) {
      await send(t, device, { to: pick([...user.contacts]), kind: 'direct' }, `${user.name} #${n}`);
    } else if (r < 0.72 && user.groups.length) {
      await send(t, device, { to: pick(user.groups), kind: 'group' }, `${user.name} #${n}`);
    } else if (r < 0.8) {
      const to = pick([...user.contacts]);
      try {
        const media = await device.client.media({ attempts: 2 }).upload(await randomPng(random), { mime: 'image/png' });
        await send(t, device, { to, kind: 'image' }, '', MSG_TYPE.IMAGE, media.mediaId);
      } catch {
        t.ops.uploadsFailed++;
      }
    } else if (r < 0.87) {
      const others = t.users.filter((u) => u !== user && !user.contacts.has(u.name));
      if (!others.length) continue;
      const other = pick(others);
      try {
        await device.client.requestContact(other.name, 'chaos');
        await pick(other.devices).client.acceptContact(user.name);
        user.contacts.add(other.name);
        other.contacts.add(user.name);
        t.ops.contactsOk++;
      } catch {
        t.ops.contactsFailed++;
      }
    } else if (r < 0.9) {
      const extra = t.users.reduce((s, u) => s + u.devices.length - 2, 0);
      if (extra >= MAX_EXTRA_DEVICES) continue;
      try {
        user.devices.push(await openDevice(user, `extra${user.devices.length}`, urls, Math.floor(random() * urls.length)));
        t.ops.loginsOk++;
      } catch {
        t.ops.loginsFailed++;
      }
    }
  }
}

/** Runs every user's loop until `stopAt`; resolves when all stopped issuing (sends may still be in flight). */
export async function runTraffic(t: Traffic, urls: string[], random: () => number, stopAt: number): Promise<void> {
  await Promise.all(t.users.map((u) => userLoop(t, u, urls, random, stopAt)));
}

/** Closes every client. */
export async function closeTraffic(t: Traffic): Promise<void> {
  await Promise.all(t.users.flatMap((u) => u.devices.map((d) => d.client.close().catch(() => {}))));
}
