/**
 * Generated avatars (`/api/avatar`): a user's or group's initials on a colour of its own (core/avatar.ts), rendered
 * to PNG with sharp. No uploaded avatars yet: this is the placeholder every client may show (WeChat-web's
 * `webwxgeticon`, docs/webwx.md).
 */
import sharp from 'sharp';
import { avatarSvg } from '../core/avatar.ts';
import type { SessionRow } from '../core/ports.ts';
import { foldUsername, groupAddress, parseGroupAddress } from '../core/rules.ts';
import { RET } from '../protocol/index.ts';
import { fail, type Body, type Handlers, type ServiceContext } from './context.ts';

/**
 * Rendered pictures kept, by id and shown name (a rename renders anew). A render costs ~2-30 ms of libvips and
 * 2-4 KB of PNG; 1,000 of them bound the cache near 4 MB.
 */
const CACHE_MAX = 1000;

/** `/api/avatar`. */
export class AvatarCalls {
  readonly #c: ServiceContext;
  readonly #cache = new Map<string, string>();

  constructor(c: ServiceContext) {
    this.#c = c;
  }

  /** The calls this area serves. */
  handlers(): Handlers {
    return { '/api/avatar': (s, b) => this.#avatar(s, b) };
  }

  /** Any user's avatar (their shown name is public, as `/api/users/lookup` shows); a group's for its members only. */
  async #avatar(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const read = this.#c.store.read;
    const groupId = parseGroupAddress(b.peer);
    let peer: string;
    let name: string;
    if (groupId !== undefined) {
      const g = await read.getGroup(groupId);
      if (!g || !(await read.getMembers(groupId)).includes(s.uin)) fail(RET.FORBIDDEN, 'not a member of this group');
      peer = groupAddress(groupId);
      name = g.name;
    } else {
      const user = await read.getUserByName(foldUsername(b.peer));
      if (!user) fail(RET.NOT_FOUND, 'no such user');
      peer = user.username;
      name = user.displayName;
    }
    const key = `${peer}\n${name}`;
    let data = this.#cache.get(key);
    if (data === undefined) {
      data = (await sharp(Buffer.from(avatarSvg(peer, name))).png().toBuffer()).toString('base64');
      if (this.#cache.size >= CACHE_MAX) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(key, data);
    }
    return { peer, mime: 'image/png', data };
  }
}
