/**
 * A strict reader of Prometheus' text exposition format (version 0.0.4), for tests: every line must be a HELP, a TYPE
 * or a sample of the grammar, a family's HELP and TYPE come once and before its samples, names and labels are well
 * formed, no series repeats, and a histogram's buckets rise to a `+Inf` bucket equal to its `_count`. Anything else
 * throws naming the line. https://prometheus.io/docs/instrumenting/exposition_formats/
 */

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One metric family. */
export interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  samples: Sample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*';
const LABEL_VALUE = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const VALUE = '(?:[+-]?(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]Inf|NaN)';
const HELP_RE = new RegExp(`^# HELP (${NAME}) (.*)$`);
const TYPE_RE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const SAMPLE_RE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL}=${LABEL_VALUE})(?:,${LABEL}=${LABEL_VALUE})*,?)?\\})? (${VALUE})(?: -?[0-9]+)?$`);
const PAIR_RE = new RegExp(`(${LABEL})=(${LABEL_VALUE})`, 'g');

function unescape(quoted: string): string {
  return quoted.slice(1, -1).replace(/\\(["\\n])/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

function parseValue(text: string): number {
  if (text.endsWith('Inf')) return text.startsWith('-') ? -Infinity : Infinity;
  return Number(text);
}

/** The family a sample belongs to: its own name, or a histogram's/summary's base name. */
function familyOf(families: Map<string, Family>, sample: string): Family | undefined {
  const own = families.get(sample);
  if (own) return own;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sample.endsWith(suffix)) continue;
    const f = families.get(sample.slice(0, -suffix.length));
    if (f && (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket'))) return f;
  }
  return undefined;
}

/** Parses `text` strictly; throws on the first violation. */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const helps = new Map<string, string>();
  const seen = new Set<string>();
  const lines = text.split('\n');
  if (lines[lines.length - 1] !== '') throw new Error('the text must end with a newline');
  lines.forEach((line, i) => {
    const at = `line ${i + 1} (${JSON.stringify(line)})`;
    if (line === '') return;
    let m = HELP_RE.exec(line);
    if (m) {
      if (helps.has(m[1]!)) throw new Error(`${at}: a second HELP for ${m[1]}`);
      if (families.get(m[1]!)?.samples.length) throw new Error(`${at}: HELP after samples`);
      helps.set(m[1]!, m[2]!);
      return;
    }
    m = TYPE_RE.exec(line);
    if (m) {
      if (families.has(m[1]!)) throw new Error(`${at}: a second TYPE for ${m[1]}`);
      families.set(m[1]!, { name: m[1]!, help: helps.get(m[1]!) ?? '', type: m[2] as Family['type'], samples: [] });
      return;
    }
    if (line.startsWith('#')) throw new Error(`${at}: a comment that is neither HELP nor TYPE`);
    m = SAMPLE_RE.exec(line);
    if (!m) throw new Error(`${at}: not a sample line`);
    const family = familyOf(families, m[1]!);
    if (!family) throw new Error(`${at}: a sample before its family's TYPE`);
    const labels: Record<string, string> = {};
    for (const p of (m[2] ?? '').matchAll(PAIR_RE)) {
      if (p[1]! in labels) throw new Error(`${at}: label ${p[1]} twice`);
      labels[p[1]!] = unescape(p[2]!);
    }
    const key = m[1]! + JSON.stringify(Object.entries(labels).sort());
    if (seen.has(key)) throw new Error(`${at}: the same series twice`);
    seen.add(key);
    family.samples.push({ name: m[1]!, labels, value: parseValue(m[3]!) });
  });
  for (const f of families.values()) {
    if (!helps.has(f.name)) throw new Error(`${f.name}: no HELP`);
    if (f.type === 'histogram') checkHistogram(f);
  }
  return families;
}

/** Buckets rise with `le` to `+Inf`, which equals `_count`, per series. */
function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (s.name === f.name + '_bucket') {
      if (le === undefined) throw new Error(`${f.name}: a bucket without le`);
      entry.buckets.push([parseValue(le), s.value]);
    } else if (s.name === f.name + '_count') entry.count = s.value;
    else if (s.name === f.name + '_sum') entry.sum = s.value;
    else throw new Error(`${f.name}: unexpected sample ${s.name}`);
  }
  for (const [key, e] of series) {
    if (e.count === undefined || e.sum === undefined) throw new Error(`${f.name}${key}: _count or _sum missing`);
    const sorted = [...e.buckets].sort((a, b) => a[0] - b[0]);
    if (sorted[sorted.length - 1]?.[0] !== Infinity) throw new Error(`${f.name}${key}: no +Inf bucket`);
    for (let i = 1; i < sorted.length; i++) if (sorted[i]![1] < sorted[i - 1]![1]) throw new Error(`${f.name}${key}: buckets fall at le=${sorted[i]![0]}`);
    if (sorted[sorted.length - 1]![1] !== e.count) throw new Error(`${f.name}${key}: +Inf bucket ≠ _count`);
  }
}

/** Sum of the samples named `sample` whose labels include `labels`. */
export function sumOf(families: Map<string, Family>, sample: string, labels: Record<string, string> = {}): number {
  const family = familyOf(families, sample);
  if (!family) throw new Error(`no family for ${sample}`);
  let sum = 0;
  for (const s of family.samples) {
    if (s.name !== sample) continue;
    if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}
