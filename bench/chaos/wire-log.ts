/**
 * What one device's long connections carried, for the report of a device that diverged: a device silent at an
 * old key could be a server that stopped telling it (no NOTIFY or PUSH after its key), a client that ignored
 * what it was told (a NOTIFY beyond its key and no SYNC after), or a SYNC left unanswered. The log wraps the
 * device's connector and decodes both directions with the protocol's own decoder; it keeps, per device, the
 * last link's sync-related packets (AUTH, AUTH_OK, SYNC and its answer, NOTIFY, PUSH, ACK, ERROR) and counts.
 */
import { FrameDecoder, OP, OP_NAME, parseBody, type Packet } from '../../src/protocol/index.ts';
import type { ByteLinkHandler, Connector } from '../../src/sdk/wire.ts';

/** Packets kept per link (the last ones). */
const KEPT = 12;
const SYNC_OPS: ReadonlySet<number> = new Set([OP.AUTH, OP.AUTH_OK, OP.SYNC, OP.SYNC_RESP, OP.NOTIFY, OP.PUSH, OP.ACK, OP.ERROR]);

interface LinkLog {
  url: string;
  openedAt: number;
  closedAt?: number;
  /** `>` sent by the device, `<` received: op, syncKey (or ret), ms since the link opened. */
  packets: string[];
}

/** One device's long-connection history. */
export class WireLog {
  links = 0;
  #last: LinkLog | undefined;

  /** `connector` with both directions of every link it opens logged here. */
  wrap(connector: Connector): Connector {
    return {
      transport: connector.transport,
      connect: (url, handler) => {
        const log: LinkLog = { url, openedAt: Date.now(), packets: [] };
        this.#last = log;
        this.links++;
        const inbound = new FrameDecoder();
        const outbound = new FrameDecoder();
        const watched: ByteLinkHandler = {
          onLinkOpen: () => handler.onLinkOpen(),
          onLinkData: (chunk) => {
            for (const p of inbound.push(chunk).packets) record(log, '<', p);
            handler.onLinkData(chunk);
          },
          onLinkClose: (reason) => {
            log.closedAt = Date.now();
            handler.onLinkClose(reason);
          },
        };
        const link = connector.connect(url, watched);
        return {
          send: (data) => {
            for (const p of outbound.push(data).packets) record(log, '>', p);
            link.send(data);
          },
          close: () => link.close(),
        };
      },
    };
  }

  /** The last link, for a report line: url, age, state, its last sync-related packets (ms since it opened). */
  describe(): string {
    const l = this.#last;
    if (!l) return 'no long connection';
    const state = l.closedAt === undefined ? 'open' : `closed after ${l.closedAt - l.openedAt} ms`;
    return `link ${this.links} to ${l.url} ${state}, opened ${Date.now() - l.openedAt} ms ago: ${l.packets.join(', ')}`;
  }
}

function record(log: LinkLog, dir: '<' | '>', p: Packet): void {
  if (!SYNC_OPS.has(p.op)) return;
  let detail = '';
  try {
    const body = parseBody(p.body) as { syncKey?: unknown; ret?: unknown; continueFlag?: unknown } | undefined;
    if (body?.syncKey !== undefined) detail = ` ${String(body.syncKey)}${body.continueFlag ? ' (more)' : ''}`;
    if (typeof body?.ret === 'number' && body.ret !== 0) detail += ` ret ${body.ret}`;
  } catch {
    detail = ' (bad body)';
  }
  log.packets.push(`${dir}${OP_NAME[p.op]}${detail} at ${Date.now() - log.openedAt}`);
  if (log.packets.length > KEPT) log.packets.shift();
}
