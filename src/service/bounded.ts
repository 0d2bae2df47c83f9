/** The one eviction rule of the service's in-memory caches and throttles (docs/architecture.md "service"). */

/**
 * Sets `key` in an insertion-ordered map of at most `max` entries: the key moves to the newest place, and when the
 * map is full the oldest entry goes first. Returns the evicted key, if any.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): K | undefined {
  let evicted: K | undefined;
  if (!map.delete(key) && map.size >= max) {
    evicted = map.keys().next().value as K;
    map.delete(evicted);
  }
  map.set(key, value);
  return evicted;
}
