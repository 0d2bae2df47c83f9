/**
 * Generated avatars, pure: an SVG with a name's initials on a colour chosen from the owner's id, the placeholder
 * `/api/avatar` renders to PNG (WeChat-web's `webwxgeticon`). Deterministic: the same id and name give the same
 * picture on every node, so it can be cached anywhere.
 */

/** Background colours (white text stays readable on each). */
const PALETTE = ['#1f7a5c', '#2d6cdf', '#8e44ad', '#c0392b', '#d35400', '#16a085', '#5d6d7e', '#b7950b'] as const;

/** Side of the square picture, in px (WeChat-web shows avatars at 132 px). */
export const AVATAR_SIZE_PX = 132;

/** Up to two initials of `name` (first letters of its first two words), upper-cased; `?` for a name without letters. */
export function initialsOf(name: string): string {
  const words = name.trim().split(/\s+/u).filter((w) => /[\p{L}\p{N}]/u.test(w));
  const letters = words.slice(0, 2).map((w) => [...w.replace(/^[^\p{L}\p{N}]+/u, '')][0] ?? '');
  const s = letters.join('').toUpperCase();
  return s === '' ? '?' : s;
}

/** FNV-1a over the UTF-16 units of `s`: a cheap, stable spread of ids over the palette. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The avatar of `id` (a username or group id) showing `name`'s initials, as SVG text. */
export function avatarSvg(id: string, name: string): string {
  const colour = PALETTE[hash32(id) % PALETTE.length];
  const text = escapeXml(initialsOf(name));
  const size = AVATAR_SIZE_PX;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}">` +
    `<rect width="${size}" height="${size}" fill="${colour}"/>` +
    `<text x="50%" y="50%" dy="0.35em" font-size="${Math.round(size * 0.42)}" text-anchor="middle" fill="#fff" font-family="sans-serif">${text}</text>` +
    `</svg>`
  );
}
