/**
 * QR login rules, pure (docs/protocol.md "QR login"): what the asking device's poll sees, who may scan and confirm,
 * and when the asking device may collect its session. Times are parameters: the service loads the row, asks here,
 * and stores the answer with a compare-and-set (`StoreTx.updateQrLogin`), so two nodes cannot both win.
 */
import { LIMITS, RET } from '../protocol/index.ts';
import type { QrLoginRow } from './ports.ts';
import { refuse, type Refusal } from './rules.ts';

/**
 * What the asking device is told. `confirmed` means its session may be collected now (once: the collecting poll
 * moves the row to `claimed`, which every later poll sees as `expired`).
 */
export type QrLoginView =
  | { state: 'waiting' }
  | { state: 'scanned'; scannerUin: number }
  | { state: 'confirmed'; uin: number }
  | { state: 'expired' };

/** The states a poll may say it last saw (`state` of `/api/qrlogin/poll`): it is held while the login is still in it. */
export type QrPollKnownState = 'waiting' | 'scanned';

/** What a poll of `row` sees at `nowMs`: past its expiry, or collected, it is `expired` whatever else it was. */
export function qrLoginView(row: QrLoginRow, nowMs: number): QrLoginView {
  if (row.state === 'claimed' || nowMs >= row.expireTime) return { state: 'expired' };
  if (row.state === 'waiting') return { state: 'waiting' };
  if (row.state === 'scanned') return { state: 'scanned', scannerUin: row.scannerUin };
  return { state: 'confirmed', uin: row.scannerUin };
}

/** How long a poll may be held, in ms: its `timeout`, at most {@link LIMITS.maxQrPollTimeoutMs}. */
export function qrPollHoldMs(timeoutMs: number | undefined): number {
  return Math.max(0, Math.min(timeoutMs ?? LIMITS.defaultQrPollTimeoutMs, LIMITS.maxQrPollTimeoutMs));
}

/** True when a poll whose device last saw `known` must be answered with `view` now (the state moved on). */
export function isQrPollAnswered(view: QrLoginView, known: QrPollKnownState): boolean {
  return view.state !== known;
}

/** Why a QR login cannot be scanned or confirmed now: missing, expired or collected. */
function refusalOfGone(row: QrLoginRow | undefined, nowMs: number): Refusal | undefined {
  if (!row) return refuse(RET.NOT_FOUND, 'no such QR login');
  if (qrLoginView(row, nowMs).state === 'expired') return refuse(RET.NOT_FOUND, 'this QR code expired: ask the device for a new one');
  return undefined;
}

const SCANNED_BY_OTHER = 'this QR code was scanned by another account';

/**
 * A scan by `uin`: allowed on a waiting login (`isNew`: it becomes `scanned` by `uin`), and again by the same user
 * (it changes nothing). A scan never confirms: the scanning device shows who asks, and its user decides.
 */
export function decideQrScan(row: QrLoginRow | undefined, uin: number, nowMs: number): { ok: true; isNew: boolean } | Refusal {
  const gone = refusalOfGone(row, nowMs);
  if (gone) return gone;
  if (row!.state === 'waiting') return { ok: true, isNew: true };
  if (row!.scannerUin !== uin) return refuse(RET.CONFLICT, SCANNED_BY_OTHER);
  if (row!.state === 'confirmed') return refuse(RET.CONFLICT, 'this QR login is already confirmed');
  return { ok: true, isNew: false };
}

/**
 * A confirm by `uin`: only of a login `uin` scanned (the scan is where the user saw which device asks), and only
 * once: a second confirm, or one racing the first, is refused.
 */
export function decideQrConfirm(row: QrLoginRow | undefined, uin: number, nowMs: number): { ok: true } | Refusal {
  const gone = refusalOfGone(row, nowMs);
  if (gone) return gone;
  if (row!.state === 'waiting') return refuse(RET.CONFLICT, 'scan the QR code first: the scan shows which device asks');
  if (row!.scannerUin !== uin) return refuse(RET.CONFLICT, SCANNED_BY_OTHER);
  if (row!.state === 'confirmed') return refuse(RET.CONFLICT, 'this QR login is already confirmed: a QR code logs in once');
  return { ok: true };
}

/** What the scanning user is shown of the asking device: its name and when it asked, never its address. */
export function qrAskingDevice(row: QrLoginRow): { deviceName: string; createTime: number; expiresAt: number } {
  return { deviceName: row.deviceName, createTime: row.createTime, expiresAt: row.expireTime };
}
