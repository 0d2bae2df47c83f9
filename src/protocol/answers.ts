/**
 * Answers that several edges give in the same words (HTTP synccheck, CALL of /api/synccheck on the long
 * connection, sync, ACK): written once here so they cannot drift apart (shared/STYLE.md "do not repeat").
 */
import { RET } from './ret-codes.ts';

/** errMsg for a key beyond the log's head: the device holds a key from another epoch (PROTOCOL.md "epoch"). */
export function aheadOfLogErrMsg(syncKey: number, head: number): string {
  return `syncKey ${syncKey} is ahead of this log (head ${head}); check epoch and sync from 0`;
}

/** A synccheck answer: what kinds of news lie after the key (0: none), the head, and the log's epoch. */
export function synccheckAnswer(selector: number, syncKey: number, epoch: string): string {
  return `{"ret":0,"selector":${selector},"syncKey":${syncKey},"epoch":${JSON.stringify(epoch)}}`;
}

/** The refusal of a synccheck whose key is ahead of the head (ret 1, with the epoch to compare). */
export function aheadOfLogAnswer(syncKey: number, head: number, epoch: string): string {
  return JSON.stringify({ ret: RET.BAD_REQUEST, errMsg: aheadOfLogErrMsg(syncKey, head), epoch });
}
