/**
 * Pure helpers for the views: msgId order, times and day labels, initials and avatar colours, link detection
 * (as tokens, so message text is only ever rendered as text nodes), previews.
 */
import { MSG_TYPE } from '../../src/protocol/index.ts';

/** Compares two msgIds (decimal strings without leading zeros) numerically. */
export function compareMsgId(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The larger of two msgIds ('' counts as nothing). */
export function maxMsgId(a: string, b: string): string {
  if (!a) return b;
  if (!b) return a;
  return compareMsgId(a, b) >= 0 ? a : b;
}

/** True when `id` is in a group conversation (`@@<digits>`). */
export function isGroupPeer(peer: string): boolean {
  return peer.startsWith('@@');
}

/** Up to two initials of a name, upper case. */
export function initials(name: string): string {
  const words = name.trim().split(/[\s_.-]+/).filter(Boolean);
  if (words.length === 0) return '?';
  const first = [...words[0]!][0] ?? '?';
  const second = words.length > 1 ? ([...words[words.length - 1]!][0] ?? '') : ([...words[0]!][1] ?? '');
  return (first + second).toUpperCase();
}

const AVATAR_HUES = [212, 262, 330, 12, 32, 152, 178, 288, 196, 350];

/** A stable avatar hue from a key (the stylesheet picks lightness per theme). */
export function avatarHue(key: string): number {
  let h = 0;
  for (const ch of key) h = (h * 31 + ch.codePointAt(0)!) >>> 0;
  return AVATAR_HUES[h % AVATAR_HUES.length]!;
}

function sameDay(a: Date, b: Date): boolean {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/** `14:05`. */
export function timeOfDay(ms: number): string {
  return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** A short time for the conversation list: time today, `Yesterday`, weekday this week, else a date. */
export function shortTime(ms: number, now = Date.now()): string {
  if (!ms) return '';
  const d = new Date(ms);
  const today = new Date(now);
  if (sameDay(d, today)) return timeOfDay(ms);
  const yesterday = new Date(now - 86_400_000);
  if (sameDay(d, yesterday)) return 'Yesterday';
  if (now - ms < 6 * 86_400_000) return d.toLocaleDateString(undefined, { weekday: 'short' });
  return d.toLocaleDateString(undefined, { day: 'numeric', month: 'short', ...(d.getFullYear() !== today.getFullYear() ? { year: 'numeric' } : {}) });
}

/** The label of a day separator. */
export function dayLabel(ms: number, now = Date.now()): string {
  const d = new Date(ms);
  if (sameDay(d, new Date(now))) return 'Today';
  if (sameDay(d, new Date(now - 86_400_000))) return 'Yesterday';
  return d.toLocaleDateString(undefined, { weekday: 'long', day: 'numeric', month: 'long', ...(d.getFullYear() !== new Date(now).getFullYear() ? { year: 'numeric' } : {}) });
}

/** A key that changes when the local day changes. */
export function dayKey(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

/** A piece of message text: plain, or a link to an http(s) URL. */
export type TextToken = { text: string } | { text: string; href: string };

const URL_RE = /\b(?:https?:\/\/|www\.)[^\s<>"'`]+/gi;

/**
 * Splits text into plain pieces and links. Only `http:` and `https:` URLs become links (never `javascript:` and
 * friends); trailing punctuation stays outside the link. The views render tokens as text nodes and `<a href>`.
 */
export function linkify(text: string): TextToken[] {
  const out: TextToken[] = [];
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    let raw = m[0];
    const trail = /[.,;:!?)\]}]+$/.exec(raw);
    if (trail && !(trail[0].startsWith(')') && raw.includes('('))) raw = raw.slice(0, raw.length - trail[0].length);
    const start = m.index;
    let href: string | undefined;
    try {
      const u = new URL(raw.startsWith('www.') ? `https://${raw}` : raw);
      if (u.protocol === 'http:' || u.protocol === 'https:') href = u.href;
    } catch {
      href = undefined;
    }
    if (!href) continue;
    if (start > last) out.push({ text: text.slice(last, start) });
    out.push({ text: raw, href });
    last = start + raw.length;
  }
  if (last < text.length) out.push({ text: text.slice(last) });
  return out;
}

/** True when the text is only emoji (1–3 of them): shown large, without a bubble tail. */
export function isEmojiOnly(text: string): boolean {
  const t = text.trim();
  if (!t || t.length > 24) return false;
  return /^(?:\p{Extended_Pictographic}|\p{Emoji_Component}|\u200d|\ufe0f|\s)+$/u.test(t) && !/[0-9#*]/.test(t) && [...t.replace(/\s/g, '')].filter((c) => /\p{Extended_Pictographic}/u.test(c)).length <= 3;
}

/** Human size: `1.4 MB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} KB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(1)} GB`;
}

/** `0:07`, `1:23`. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** The one-line preview of a message in the conversation list. */
export function previewOf(type: number, content: string, recalled?: boolean): string {
  if (recalled) return 'Message recalled';
  switch (type) {
    case MSG_TYPE.IMAGE:
      return content ? `📷 ${content}` : '📷 Photo';
    case MSG_TYPE.VOICE:
      return `🎤 Voice message (${formatDuration(Number(content) || 0)})`;
    case MSG_TYPE.FILE:
      return `📎 ${content || 'File'}`;
    default:
      return content.replace(/\s+/g, ' ').slice(0, 120);
  }
}

/** A device name from the user agent: `Chrome on Linux`. */
export function deviceNameOf(userAgent: string): string {
  const browser = /Edg\//.test(userAgent)
    ? 'Edge'
    : /Firefox\//.test(userAgent)
      ? 'Firefox'
      : /Chrome\//.test(userAgent)
        ? 'Chrome'
        : /Safari\//.test(userAgent)
          ? 'Safari'
          : 'Browser';
  const os = /Android/.test(userAgent)
    ? 'Android'
    : /iPhone|iPad/.test(userAgent)
      ? 'iOS'
      : /Mac OS X/.test(userAgent)
        ? 'macOS'
        : /Windows/.test(userAgent)
          ? 'Windows'
          : /Linux/.test(userAgent)
            ? 'Linux'
            : '';
  return os ? `${browser} on ${os}` : browser;
}
