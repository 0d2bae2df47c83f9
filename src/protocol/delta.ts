/**
 * Delta merge: combines entries a device already has with newly fetched or pushed ones, and says whether the
 * device's copy is contiguous from its key (centrifuge's MergePublications, by seq). Pure; shared by the SDK
 * and the property tests.
 */

/** Anything with a seq. */
export interface Sequenced {
  seq: number;
}

/**
 * Applies a page that claims to follow `fromKey`. Entries at or below the key are duplicates and dropped; the
 * rest are sorted and de-duplicated. `newKey` is the last applied seq.
 */
export function mergeDelta<T extends Sequenced>(fromKey: number, incoming: readonly T[]): { apply: T[]; newKey: number } {
  const seen = new Set<number>();
  const apply: T[] = [];
  for (const e of [...incoming].sort((a, b) => a.seq - b.seq)) {
    if (e.seq <= fromKey || seen.has(e.seq)) continue;
    seen.add(e.seq);
    apply.push(e);
  }
  return { apply, newKey: apply.length ? apply[apply.length - 1]!.seq : fromKey };
}
