// The pure QR login rules (src/core/qr-login.ts): what a poll sees at and after expiry, when it is answered, and
// who may scan and confirm in each state.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { QrLoginRow } from '../../src/core/ports.ts';
import { decideQrConfirm, decideQrScan, isQrPollAnswered, qrLoginView, qrPollHoldMs } from '../../src/core/qr-login.ts';
import { LIMITS, RET } from '../../src/protocol/index.ts';

const row = (over: Partial<QrLoginRow> = {}): QrLoginRow => ({
  uuid: '0'.repeat(32),
  deviceId: 'desk',
  deviceName: 'Desk',
  createTime: 1000,
  expireTime: 2000,
  state: 'waiting',
  scannerUin: 0,
  scanTime: 0,
  ...over,
});

test('a login is expired from its expiry time on, and once collected, whatever its state', () => {
  assert.deepEqual(qrLoginView(row(), 1999), { state: 'waiting' });
  assert.deepEqual(qrLoginView(row(), 2000), { state: 'expired' });
  assert.deepEqual(qrLoginView(row({ state: 'scanned', scannerUin: 7 }), 1500), { state: 'scanned', scannerUin: 7 });
  assert.deepEqual(qrLoginView(row({ state: 'confirmed', scannerUin: 7 }), 1500), { state: 'confirmed', uin: 7 });
  assert.deepEqual(qrLoginView(row({ state: 'confirmed', scannerUin: 7 }), 2000), { state: 'expired' }, 'confirmed too late: nothing to collect');
  assert.deepEqual(qrLoginView(row({ state: 'claimed', scannerUin: 7 }), 1500), { state: 'expired' });
});

test('a poll is held while the login is in the state its device last saw, for at most 30 s', () => {
  assert.equal(isQrPollAnswered({ state: 'waiting' }, 'waiting'), false);
  assert.equal(isQrPollAnswered({ state: 'scanned', scannerUin: 7 }, 'waiting'), true);
  assert.equal(isQrPollAnswered({ state: 'scanned', scannerUin: 7 }, 'scanned'), false);
  assert.equal(isQrPollAnswered({ state: 'waiting' }, 'scanned'), true);
  assert.equal(isQrPollAnswered({ state: 'expired' }, 'scanned'), true);
  assert.equal(qrPollHoldMs(undefined), LIMITS.defaultQrPollTimeoutMs);
  assert.equal(qrPollHoldMs(999_999), LIMITS.maxQrPollTimeoutMs);
  assert.equal(qrPollHoldMs(0), 0);
});

test('scan: a waiting login by anyone, again by the same user only; never a missing, expired or confirmed one', () => {
  assert.deepEqual(decideQrScan(row(), 7, 1500), { ok: true, isNew: true });
  assert.deepEqual(decideQrScan(row({ state: 'scanned', scannerUin: 7 }), 7, 1500), { ok: true, isNew: false });
  assert.equal((decideQrScan(row({ state: 'scanned', scannerUin: 7 }), 8, 1500) as { ret: number }).ret, RET.CONFLICT);
  assert.equal((decideQrScan(row({ state: 'confirmed', scannerUin: 7 }), 7, 1500) as { ret: number }).ret, RET.CONFLICT);
  assert.equal((decideQrScan(undefined, 7, 1500) as { ret: number }).ret, RET.NOT_FOUND);
  assert.equal((decideQrScan(row(), 7, 2000) as { ret: number }).ret, RET.NOT_FOUND);
  assert.equal((decideQrScan(row({ state: 'claimed', scannerUin: 7 }), 7, 1500) as { ret: number }).ret, RET.NOT_FOUND);
});

test('confirm: only by the user who scanned it, once, before expiry', () => {
  assert.deepEqual(decideQrConfirm(row({ state: 'scanned', scannerUin: 7 }), 7, 1500), { ok: true });
  assert.equal((decideQrConfirm(row(), 7, 1500) as { ret: number }).ret, RET.CONFLICT, 'not scanned yet');
  assert.equal((decideQrConfirm(row({ state: 'scanned', scannerUin: 7 }), 8, 1500) as { ret: number }).ret, RET.CONFLICT);
  assert.equal((decideQrConfirm(row({ state: 'confirmed', scannerUin: 7 }), 7, 1500) as { ret: number }).ret, RET.CONFLICT);
  assert.equal((decideQrConfirm(row({ state: 'scanned', scannerUin: 7 }), 7, 2000) as { ret: number }).ret, RET.NOT_FOUND);
  assert.equal((decideQrConfirm(undefined, 7, 1500) as { ret: number }).ret, RET.NOT_FOUND);
});
