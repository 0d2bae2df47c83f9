/**
 * Messages and the log: sync pages, sends (idempotent by clientMsgId, direct and group), read markers with
 * receipts, and recall. See docs/protocol.md "Messages".
 */
import { directReadReceipt, directRecipients, sendAnswer, unblockedRecipients, type Recipient } from '../core/decisions.ts';
import type { RateCounter, SessionRow } from '../core/ports.ts';
import {
  checkRecall,
  checkSendContent,
  clampSyncLimit,
  foldUsername,
  groupAddress,
  isNewerReadMarker,
  isProofOfLoss,
  parseGroupAddress,
} from '../core/rules.ts';
import { LIMITS, RET, aheadOfLogErrMsg } from '../protocol/index.ts';
import { addLatestChats, type ChatSummary } from '../core/chats.ts';
import { fail, type Body, type Handlers, type ServiceContext } from './context.ts';

/** Sends per user per 10 s when rate limiting is on. */
export const SENDS_PER_WINDOW = 300;
export const SEND_WINDOW_MS = 10_000;
/** Log entries read per page while looking for recent conversations. */
const CHATS_PAGE = 500;

/** Sync, send, read and recall. */
export class MessageCalls {
  readonly #c: ServiceContext;
  readonly #sends: RateCounter;

  constructor(c: ServiceContext) {
    this.#c = c;
    this.#sends = c.options.counters.counter('sends', SENDS_PER_WINDOW, SEND_WINDOW_MS);
  }

  /** The calls this area serves. */
  handlers(): Handlers {
    return {
      '/api/sync': (s, b) => this.#sync(s, b),
      '/api/sendmsg': (s, b) => this.#sendmsg(s, b),
      '/api/read': (s, b) => this.#read(s, b),
      '/api/revoke': (s, b) => this.#revoke(s, b),
      '/api/chats': (s, b) => this.#chats(s, b),
    };
  }

  async #sync(s: SessionRow, b: Body): Promise<string> {
    const key: number = b.syncKey;
    const limit = clampSyncLimit(b.limit);
    const epoch = await this.#c.epochOf(s.uin);
    const { head } = (await this.#c.store.read.heads([s.uin]))[0]!;
    if (isProofOfLoss(key, head)) {
      fail(RET.BAD_REQUEST, aheadOfLogErrMsg(key, head), { epoch: await this.#c.renewEpoch(s.uin, epoch, head) });
    }
    // One page plus one row tells whether more remain, without counting the log.
    const rows = await this.#c.store.readLog(s.uin, key, limit + 1);
    const continueFlag = rows.length > limit;
    if (continueFlag) rows.pop();
    const newKey = rows.length ? rows[rows.length - 1]!.seq : key;
    this.#c.ack(s.sessionId, key);
    this.#c.opsCounts.syncEntries += rows.length;
    this.#c.options.observer?.syncPage(rows.length);
    let entries = '';
    for (let i = 0; i < rows.length; i++) entries += (i ? ',' : '') + rows[i]!.json;
    return `{"ret":0,"entries":[${entries}],"syncKey":${newKey},"continueFlag":${continueFlag},"epoch":${JSON.stringify(epoch)}}`;
  }

  /**
   * `/api/chats`: the caller's conversations, latest message first, read from the newest
   * {@link LIMITS.chatsScanEntries} entries of their own log (pages of {@link CHATS_PAGE}, newest first); with
   * `peer`, only that conversation (its latest msgId, or none in that window).
   */
  async #chats(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const onlyPeer = b.peer === undefined ? undefined : parseGroupAddress(b.peer) !== undefined ? b.peer : foldUsername(b.peer);
    const limit = onlyPeer !== undefined ? 1 : (b.limit ?? LIMITS.maxChats);
    const { head } = (await this.#c.store.read.heads([s.uin]))[0]!;
    const floor = Math.max(0, head - LIMITS.chatsScanEntries);
    const found = new Map<string, ChatSummary>();
    // Seqs are dense (Store.append), so the page below `upper` is readLog(upper - n, n).
    for (let upper = head; upper > floor; ) {
      const from = Math.max(floor, upper - CHATS_PAGE);
      const rows = await this.#c.store.readLog(s.uin, from, upper - from);
      if (addLatestChats(found, rows.reverse(), limit, onlyPeer)) break;
      upper = from;
    }
    return { chats: [...found.values()] };
  }

  async #sendmsg(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const startMs = performance.now();
    const refusal = checkSendContent(b.type, b.content, b.mediaId);
    if (refusal) fail(refusal.ret, refusal.errMsg);
    await this.#c.throttle(this.#sends, s.uin, 'sending');
    const answer = await this.#send(s, b);
    this.#c.opsCounts.sends++;
    this.#c.options.observer?.sendCommitted(performance.now() - startMs);
    return answer;
  }

  /** The send's job, run by group commit; resolves once durable. */
  #send(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    return this.#c.gc.run(async (tx, fx) => {
      const groupId = parseGroupAddress(b.to);
      let to: string;
      let toUin = 0;
      let members: number[] | undefined;
      let peerUin: number | undefined;
      if (groupId !== undefined) {
        to = groupAddress(groupId);
        // Lock the members as read, then read them again under the locks: a change of members locks every
        // member too, so the second read cannot change before this send commits.
        await fx.lock([s.uin, ...(await tx.getMembers(groupId))]);
        members = await tx.getMembers(groupId);
        await fx.lock(members);
      } else {
        to = foldUsername(b.to);
        peerUin = await this.#c.uinOf(to, tx);
        await fx.lock(peerUin === undefined ? [s.uin] : [s.uin, peerUin]);
      }
      const dup = await tx.findSend(s.uin, b.clientMsgId);
      // PROTOCOL.md sendmsg: a repeat of (sender, clientMsgId), whatever its content, returns the first answer.
      if (dup) return sendAnswer(dup, true);
      const me = await this.#c.username(s.uin, tx);
      let recipients: Recipient[] = [];
      if (members) {
        if (!members.includes(s.uin)) fail(RET.FORBIDDEN, 'not a member of this group');
      } else {
        if (peerUin === undefined) fail(RET.FORBIDDEN, 'not a contact');
        toUin = peerUin;
        if (peerUin !== s.uin && !(await this.#c.isContact(tx, s.uin, peerUin))) fail(RET.FORBIDDEN, 'not a contact');
        const isBlocked = peerUin !== s.uin && (await tx.isBlocked(peerUin, s.uin));
        recipients = directRecipients({ uin: s.uin, username: me }, { uin: peerUin, username: to }, isBlocked);
      }
      // A media message: the sender may use this media, and from now on this conversation may read it.
      if (b.mediaId) {
        if (!this.#c.media) fail(RET.BAD_REQUEST, 'media is not enabled on this server');
        await this.#c.media.checkSend(tx, s.uin, b.type, b.mediaId);
        await this.#c.media.recordSend(tx, b.mediaId, s.uin, toUin, groupId ?? 0);
      }
      const msgId = await tx.nextMsgId();
      const createTime = this.#c.clock.now();
      const shared = {
        msgId: String(msgId),
        clientMsgId: b.clientMsgId,
        from: me,
        to,
        type: b.type,
        content: b.content,
        ...(b.mediaId ? { mediaId: b.mediaId } : {}),
        createTime,
      };
      let senderSeq = 0;
      if (members) {
        // Group fan-out: every member's entry differs only in seq, so the body is encoded once. Members who
        // blocked the sender get nothing (docs/protocol.md "Blocking").
        const told = unblockedRecipients(members, s.uin, await tx.blockersAmong(s.uin, members));
        const seqs = await fx.appendEach(told, 'msg', { ...shared, peer: to });
        senderSeq = seqs[told.indexOf(s.uin)]!;
      } else {
        for (const r of recipients) {
          const seq = await fx.append(r.uin, 'msg', { ...shared, peer: r.peer });
          if (r.uin === s.uin) senderSeq = seq;
        }
      }
      await tx.insertMessage({
        msgId,
        fromUin: s.uin,
        clientMsgId: b.clientMsgId,
        to,
        toUin,
        groupId: groupId ?? 0,
        type: b.type,
        content: b.content,
        mediaId: b.mediaId ?? null,
        createTime,
        senderSeq,
        revoked: false,
      });
      return sendAnswer({ msgId, senderSeq, createTime }, false);
    });
  }

  async #read(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const msgId = Number(b.msgId);
    await this.#c.gc.run(async (tx, fx) => {
      const me = await this.#c.username(s.uin, tx);
      const msg = await tx.getMessage(msgId);
      const groupId = parseGroupAddress(b.peer);
      let peer: string;
      let receiptUin = 0;
      if (groupId !== undefined) {
        if (!msg || msg.groupId !== groupId || !(await tx.getMembers(groupId)).includes(s.uin)) fail(RET.NOT_FOUND, 'no such message in this conversation');
        peer = groupAddress(groupId);
      } else {
        peer = foldUsername(b.peer);
        const other = await tx.getUserByName(peer);
        const isBlocked = other !== undefined && other.uin !== s.uin && (await tx.isBlocked(other.uin, s.uin));
        const receipt = directReadReceipt(msg, s.uin, other?.uin, isBlocked);
        if ('ret' in receipt) fail(receipt.ret, receipt.errMsg);
        receiptUin = receipt.receiptUin;
      }
      await fx.lock(receiptUin ? [s.uin, receiptUin] : [s.uin]);
      if (!isNewerReadMarker(await tx.getReadMarker(s.uin, peer), msgId)) return;
      await tx.setReadMarker({ uin: s.uin, peer, msgId });
      await fx.append(s.uin, 'read', { peer, msgId: String(msgId), by: me });
      // PROTOCOL.md read: in a direct chat the peer gets a receipt.
      if (receiptUin) await fx.append(receiptUin, 'read', { peer: me, msgId: String(msgId), by: me });
    });
    return {};
  }

  async #revoke(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const msgId = Number(b.msgId);
    await this.#c.gc.run(async (tx, fx) => {
      const msg = await tx.getMessage(msgId);
      const refusal = checkRecall(msg, s.uin, this.#c.clock.now());
      if (refusal) fail(refusal.ret, refusal.errMsg);
      const m = msg!;
      // Lock the conversation's logs, then read the message again under the locks (another node may recall it).
      const members = m.groupId ? await tx.getMembers(m.groupId) : [];
      await fx.lock(m.groupId ? members : [s.uin, m.toUin]);
      if ((await tx.getMessage(msgId))!.revoked) return;
      await tx.setRevoked(msgId);
      // Those who blocked the sender get no recall, as they got no message.
      const blockers = await tx.blockersAmong(s.uin, m.groupId ? members : [m.toUin]);
      // `by`: who recalled (the sender), so a device can say so without looking the message up.
      const me = await this.#c.username(s.uin, tx);
      if (m.groupId) {
        const peer = groupAddress(m.groupId);
        await fx.appendEach(unblockedRecipients(members, s.uin, blockers), 'revoke', { msgId: String(msgId), peer, by: me });
      } else {
        await fx.append(s.uin, 'revoke', { msgId: String(msgId), peer: m.to, by: me });
        if (m.toUin !== s.uin && !blockers.includes(m.toUin)) await fx.append(m.toUin, 'revoke', { msgId: String(msgId), peer: me, by: me });
      }
    });
    return {};
  }
}
