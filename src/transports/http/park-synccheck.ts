/**
 * One HTTP long-poll on the {@link SynccheckHandler}, for every HTTP synccheck route (native `/api/synccheck`, and
 * WeChat-web's `synccheck` in src/transports/webwx): the answer is written once, a client that goes away unparks its
 * poll at once, and a failure is ret 9, logged.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RET } from '../../protocol/index.ts';
import type { SynccheckHandler } from '../longpoll/synccheck.ts';

/** The poll: bearer, presented key, hold in ms (clamped by the handler). */
export interface SynccheckPoll {
  sid: string | undefined;
  syncKey: number;
  timeoutMs: number | undefined;
}

/** Parks `poll` and returns the reply, which `write(ret, body)` (the handler's JSON answer) sends later. */
export function parkSynccheck(synccheck: SynccheckHandler, req: FastifyRequest, reply: FastifyReply, poll: SynccheckPoll, write: (ret: number, body: string) => void): FastifyReply {
  let isDone = false;
  const respond = (ret: number, body: string) => {
    if (isDone) return;
    isDone = true;
    if (!reply.raw.destroyed) write(ret, body);
  };
  void synccheck.handle(poll.sid, poll.syncKey, poll.timeoutMs, req.ip, respond).then((cancel) => {
    if (isDone) return;
    // A client that goes away unparks its poll at once.
    reply.raw.once('close', () => {
      if (!isDone) {
        isDone = true;
        cancel();
      }
    });
  }, (err) => {
    req.log.error({ err }, 'synccheck failed');
    respond(RET.SERVER_ERROR, JSON.stringify({ ret: RET.SERVER_ERROR, errMsg: 'server error' }));
  });
  return reply;
}
