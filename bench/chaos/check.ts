/**
 * The chaos runner's verdict, kept pure so it is tested alone on made-up logs (test/bench/chaos.test.ts): given
 * every user's log as the server serves it, what each device applied, and every send with its answer, count
 * - lost: a send answered ret 0 missing from the sender's or a recipient's log;
 * - doubled: a clientMsgId more than once in a user's log, or applied more than once by a device;
 * - diverged: a device whose applied entries or sync key differ from its user's log and head.
 */
import type { SendRecord } from './traffic.ts';

/** What one device holds at the end of a run. */
export interface DeviceState {
  user: string;
  deviceId: string;
  transport: string;
  syncKey: number;
  entries: readonly any[];
  /** Its connection state and outbox at the end, for the report of a device that diverged. */
  status?: string;
}

/** The verdict. */
export interface Verdict {
  lost: number;
  doubled: number;
  diverged: number;
  /** Each problem described (at most 50). */
  problems: string[];
}

/** Keys sorted, so entries compare by content, not by the order their fields were written in. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v));
}

function msgCounts(entries: readonly any[]): Map<string, number> {
  const count = new Map<string, number>();
  for (const e of entries) if (e.kind === 'msg') count.set(e.clientMsgId, (count.get(e.clientMsgId) ?? 0) + 1);
  return count;
}

/** Checks a run; `groups` maps a group id to its members (a direct send reaches its sender and `to`). */
export function checkRun(logs: ReadonlyMap<string, readonly any[]>, devices: readonly DeviceState[], sends: readonly SendRecord[], groups: ReadonlyMap<string, readonly string[]>): Verdict {
  const v: Verdict = { lost: 0, doubled: 0, diverged: 0, problems: [] };
  const problem = (p: string) => void (v.problems.length < 50 && v.problems.push(p));
  for (const [user, log] of logs) {
    for (const [id, n] of msgCounts(log)) {
      if (n > 1) {
        v.doubled++;
        problem(`${user}: clientMsgId ${id} ${n} times in the log`);
      }
    }
  }
  for (const d of devices) {
    const log = logs.get(d.user) ?? [];
    for (const [id, n] of msgCounts(d.entries)) {
      if (n > 1) {
        v.doubled++;
        problem(`${d.user}/${d.deviceId}: applied clientMsgId ${id} ${n} times`);
      }
    }
    const head = log.at(-1)?.seq ?? 0;
    const want = log.map(canonical);
    const got = d.entries.map(canonical);
    const firstDiff = want.findIndex((w, i) => got[i] !== w);
    if (d.syncKey !== head || got.length !== want.length || firstDiff >= 0) {
      v.diverged++;
      const diff = firstDiff >= 0 ? `, first difference at #${firstDiff}: ${got[firstDiff] ?? 'none'} vs ${want[firstDiff]}` : '';
      problem(`${d.user}/${d.deviceId} (${d.transport}${d.status ? `, ${d.status}` : ''}): key ${d.syncKey} vs head ${head}, ${got.length} entries vs ${want.length}${diff}`);
    }
  }
  for (const s of sends) {
    if (!s.answer) continue;
    for (const who of groups.get(s.to) ?? [s.from, s.to]) {
      const found = (logs.get(who) ?? []).filter((e) => e.kind === 'msg' && e.clientMsgId === s.clientMsgId);
      if (found.length === 0) {
        v.lost++;
        problem(`lost: ${s.kind} ${s.clientMsgId} from ${s.from} to ${s.to} (answered msgId ${s.answer.msgId}, seq ${s.answer.seq}) missing from ${who}'s log`);
      } else if (found[0].msgId !== s.answer.msgId) {
        v.lost++;
        problem(`${who}: ${s.clientMsgId} has msgId ${found[0].msgId}, but the answer said ${s.answer.msgId}`);
      }
    }
  }
  return v;
}
