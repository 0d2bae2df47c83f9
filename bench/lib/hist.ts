/**
 * Latency histograms for the load tool: HdrHistogram (hdr-histogram-js) in microseconds, 3 significant digits,
 * encoded to compressed base64 to cross the worker IPC channel and merged in the controller.
 */
import * as hdr from 'hdr-histogram-js';

/** Latency percentiles in milliseconds. */
export interface LatencySummary {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  meanMs: number;
}

/** A new latency histogram recording microseconds (1 µs .. 10 min, auto-resizing beyond). */
export function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3, autoResize: true });
}

/** Records a latency given in milliseconds (negative clock skew between processes clamps to 0). */
export function recordMs(h: hdr.Histogram, ms: number): void {
  h.recordValue(Math.max(0, Math.round(ms * 1000)));
}

/** Compressed base64 form for IPC. */
export function encodeHistogram(h: hdr.Histogram): string {
  return hdr.encodeIntoCompressedBase64(h);
}

/** Merges encoded histograms into one. */
export function mergeHistograms(encoded: readonly string[]): hdr.Histogram {
  const out = newHistogram();
  for (const e of encoded) {
    if (!e) continue;
    const h = hdr.decodeFromCompressedBase64(e);
    out.add(h);
  }
  return out;
}

/** p50/p90/p99/p99.9/max in ms. */
export function summarize(h: hdr.Histogram): LatencySummary {
  const ms = (us: number) => +(us / 1000).toFixed(2);
  if (h.totalCount === 0) return { count: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, p999Ms: 0, maxMs: 0, meanMs: 0 };
  return {
    count: h.totalCount,
    p50Ms: ms(h.getValueAtPercentile(50)),
    p90Ms: ms(h.getValueAtPercentile(90)),
    p99Ms: ms(h.getValueAtPercentile(99)),
    p999Ms: ms(h.getValueAtPercentile(99.9)),
    maxMs: ms(h.maxValue),
    meanMs: ms(h.mean),
  };
}
