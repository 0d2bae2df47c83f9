/**
 * Test helpers for QR login (docs/protocol.md "QR login"): ask for a uuid, and poll it over HTTP.
 */
import assert from 'node:assert/strict';
import { api } from './server.ts';

/** GET /api/qrlogin/poll; `signal` lets the test go away. */
export async function qrPoll(base: string, uuid: string, query: Record<string, string | number> = {}, signal?: AbortSignal): Promise<any> {
  const q = new URLSearchParams({ uuid, timeout: '0', ...Object.fromEntries(Object.entries(query).map(([k, v]) => [k, String(v)])) });
  const res = await fetch(`${base}/api/qrlogin/poll?${q}`, { signal });
  return res.json();
}

/** A fresh uuid for `deviceId`. */
export async function qrNew(base: string, deviceId: string, deviceName?: string): Promise<{ uuid: string; expiresAt: number }> {
  const r = await api(base, '/api/qrlogin/new', { deviceId, ...(deviceName ? { deviceName } : {}) });
  assert.equal(r.body.ret, 0, JSON.stringify(r.body));
  return r.body;
}
