/**
 * A cache of loads by key with at most `max` entries: a hit makes its entry the most recent, and past the bound the
 * least recently used goes, handed to `onEvict` once its load settled (the media cache revokes its object URL there,
 * which frees the blob). A failed load is forgotten, so the next ask loads again. The model's media caches use it:
 * without a bound a long-open tab kept every image it ever showed.
 */
export class BoundedCache<V> {
  readonly #entries = new Map<string, Promise<V>>();

  constructor(
    readonly max: number,
    private readonly onEvict: (value: V) => void = () => {},
  ) {}

  /** Entries held now. */
  get size(): number {
    return this.#entries.size;
  }

  /** The value of `key`, loaded by `load` when absent. */
  get(key: string, load: () => Promise<V>): Promise<V> {
    const hit = this.#entries.get(key);
    if (hit) {
      this.#entries.delete(key);
      this.#entries.set(key, hit);
      return hit;
    }
    const p = load();
    this.#entries.set(key, p);
    p.catch(() => {
      if (this.#entries.get(key) === p) this.#entries.delete(key);
    });
    for (const [oldKey, old] of this.#entries) {
      if (this.#entries.size <= this.max) break;
      this.#entries.delete(oldKey);
      old.then(this.onEvict, () => {});
    }
    return p;
  }

  /** Drops every entry, each handed to `onEvict` (at logout). */
  clear(): void {
    for (const p of this.#entries.values()) p.then(this.onEvict, () => {});
    this.#entries.clear();
  }
}
