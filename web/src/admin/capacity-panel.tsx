/**
 * "How many more users can this node take" (docs/capacity.md "Live estimate"): src/ops/live-capacity.ts on the
 * node's last five minutes, with every assumption shown and editable. The edits are kept in localStorage (they
 * are not secret) and apply to every node.
 */
import { useState } from 'preact/hooks';
import { BENCH_COSTS, DEFAULT_UTILISATION, DEFAULT_WORKLOAD, liveCapacity, meanHeartbeatSec, type CostSource, type LiveAssumptions, type LiveCapacity } from '../../../src/ops/live-capacity.ts';
import { formatBytes } from '../format.ts';
import type { NodeHistory } from './history.ts';

/** The editable figures, by name; absent = the default shown as the field's placeholder. */
type Overrides = Partial<Record<FieldName, number>>;

type FieldName =
  | 'online'
  | 'devices'
  | 'msgsPerUserDay'
  | 'peak'
  | 'groupShare'
  | 'groupSize'
  | 'heartbeatSec'
  | 'cores'
  | 'memGiB'
  | 'utilisation'
  | 'kernelBytesPerSocket'
  | 'maxAppendsPerSecPerWriter'
  | 'cpuPerSend'
  | 'cpuPerAppend'
  | 'cpuPerDelivery'
  | 'bytesPerConn';

interface Field {
  name: FieldName;
  label: string;
  hint: string;
}

const WORKLOAD_FIELDS: Field[] = [
  { name: 'msgsPerUserDay', label: 'Messages per user per day', hint: 'each user sends' },
  { name: 'devices', label: 'Devices per user', hint: 'every device gets everything' },
  { name: 'online', label: 'Online share at peak', hint: 'devices holding a connection' },
  { name: 'peak', label: 'Peak ÷ average rate', hint: 'busiest hour against the day' },
  { name: 'groupShare', label: 'Share sent to groups', hint: '0 – 1' },
  { name: 'groupSize', label: 'Members per group', hint: 'on average' },
  { name: 'heartbeatSec', label: 'Heartbeat (s)', hint: 'default: the live mix' },
];
const NODE_FIELDS: Field[] = [
  { name: 'cores', label: 'Node cores', hint: "default: the node's machine" },
  { name: 'memGiB', label: 'Node memory (GiB)', hint: "default: the node's machine" },
  { name: 'utilisation', label: 'Planned utilisation', hint: 'headroom for bursts and GC' },
  { name: 'maxAppendsPerSecPerWriter', label: 'SQLite writer appends/s', hint: 'measured by npm run bench' },
  { name: 'kernelBytesPerSocket', label: 'Kernel bytes per socket', hint: 'not in any RSS' },
];
const COST_FIELDS: Field[] = [
  { name: 'cpuPerSend', label: 'CPU per send (core·s)', hint: 'used without traffic' },
  { name: 'cpuPerAppend', label: 'CPU per append (core·s)', hint: 'used without traffic' },
  { name: 'cpuPerDelivery', label: 'CPU per delivery (core·s)', hint: 'used without traffic' },
  { name: 'bytesPerConn', label: 'Bytes per connection', hint: 'used while connections hold still' },
];

const STORAGE_KEY = 'synchat-admin-assumptions';

function loadOverrides(): Overrides {
  try {
    const v = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '{}') as Record<string, unknown>;
    return Object.fromEntries(Object.entries(v).filter(([, x]) => typeof x === 'number' && Number.isFinite(x) && x >= 0)) as Overrides;
  } catch {
    return {};
  }
}

/** The defaults for one node: the capacity model's workload, the node's machine and live heartbeat mix, the bench's costs. */
function defaultsFor(node: NodeHistory): Record<FieldName, number> {
  const s = node.report.snapshot;
  return {
    online: DEFAULT_WORKLOAD.online,
    devices: DEFAULT_WORKLOAD.devices,
    msgsPerUserDay: DEFAULT_WORKLOAD.msgsPerUserDay,
    peak: DEFAULT_WORKLOAD.peak,
    groupShare: DEFAULT_WORKLOAD.groupShare,
    groupSize: DEFAULT_WORKLOAD.groupSize,
    heartbeatSec: Math.round(meanHeartbeatSec(s) ?? DEFAULT_WORKLOAD.heartbeatSec),
    cores: node.report.machine.cores,
    memGiB: Math.round((node.report.machine.memBytes / 2 ** 30) * 10) / 10,
    utilisation: DEFAULT_UTILISATION,
    ...BENCH_COSTS,
  };
}

function assumptionsOf(v: Record<FieldName, number>): LiveAssumptions {
  return {
    workload: { users: 0, online: v.online, devices: v.devices, msgsPerUserDay: v.msgsPerUserDay, peak: v.peak, groupShare: v.groupShare, groupSize: v.groupSize, heartbeatSec: v.heartbeatSec },
    node: { cores: v.cores, memBytes: v.memGiB * 2 ** 30, utilisation: v.utilisation },
    kernelBytesPerSocket: v.kernelBytesPerSocket,
    maxAppendsPerSecPerWriter: v.maxAppendsPerSecPerWriter,
    fallback: { cpuPerSend: v.cpuPerSend, cpuPerAppend: v.cpuPerAppend, cpuPerDelivery: v.cpuPerDelivery, bytesPerConn: v.bytesPerConn },
  };
}

const CPU_SOURCES: Record<CostSource, string> = {
  live: 'measured live',
  'live-bound': 'measured live, idle cost included (no quiet second in the window): an upper bound',
  assumed: 'assumed: too little traffic',
};

const RESOURCE_NAMES: Record<LiveCapacity['binding'], string> = { cpu: 'CPU', memory: 'memory', writer: 'the SQLite writer' };

function formatUsers(n: number): string {
  return Number.isFinite(n) ? Math.floor(n).toLocaleString('en-US') : 'no limit';
}

function sci(n: number): string {
  return n === 0 ? '0' : n.toExponential(2);
}

/** The heartbeat periods the node's long connections agreed, as a sentence (` Heartbeats: 27 s × 3, 300 s × 2.`). */
function heartbeatMix(heartbeats: Record<string, number>): string {
  const parts = Object.entries(heartbeats)
    .filter(([, n]) => n > 0)
    .sort((a, b) => Number(a[0]) - Number(b[0]))
    .map(([sec, n]) => `${sec} s × ${n}`);
  return parts.length ? ` Heartbeats agreed: ${parts.join(', ')}.` : '';
}

/** The estimate for `node` and the form of its assumptions. */
export function CapacityPanel(props: { node: NodeHistory }) {
  const [overrides, setOverrides] = useState<Overrides>(loadOverrides);
  const [isEditing, setEditing] = useState(false);
  const defaults = defaultsFor(props.node);
  const values = { ...defaults, ...overrides };
  const latest = props.node.snapshots.last;
  if (!latest) return null;
  const r = liveCapacity(props.node.rates.toArray(), latest, assumptionsOf(values), props.node.report.store === 'sqlite');

  const edit = (name: FieldName, text: string) => {
    const next = { ...overrides };
    const n = Number(text);
    if (text.trim() === '' || !Number.isFinite(n) || n < 0) delete next[name];
    else next[name] = n;
    setOverrides(next);
    localStorage.setItem(STORAGE_KEY, JSON.stringify(next));
  };
  const reset = () => {
    setOverrides({});
    localStorage.removeItem(STORAGE_KEY);
  };
  const field = (f: Field) => (
    <label key={f.name}>
      {f.label}
      <input
        type="number"
        min="0"
        step="any"
        inputMode="decimal"
        data-testid={`assume-${f.name}`}
        value={overrides[f.name] ?? ''}
        placeholder={String(defaults[f.name])}
        onInput={(e) => edit(f.name, (e.target as HTMLInputElement).value)}
      />
      <span class="admin-hint">{f.hint}</span>
    </label>
  );
  const resources = (Object.keys(r.moreUsersBy) as LiveCapacity['binding'][]).map((k) => ({ k, load: r.loads[k]!, more: r.moreUsersBy[k]! }));

  return (
    <section class="admin-card admin-capacity" aria-labelledby="capacity-title">
      <div class="admin-card-head">
        <h2 id="capacity-title">Capacity</h2>
        <button class="ghost small" type="button" aria-expanded={isEditing} onClick={() => setEditing(!isEditing)}>
          {isEditing ? 'Hide assumptions' : 'Edit assumptions'}
        </button>
      </div>
      <p class="admin-headline">
        This node can take about{' '}
        <strong data-testid="capacity-more-users" data-value={r.moreUsers}>
          {formatUsers(r.moreUsers)}
        </strong>{' '}
        more users; <strong data-testid="capacity-binding">{RESOURCE_NAMES[r.binding]}</strong> runs out first.
      </p>
      <ul class="admin-loads">
        {resources.map(({ k, load, more }) => (
          <li key={k} class={k === r.binding ? 'is-binding' : ''} data-testid={`capacity-load-${k}`}>
            <span class="admin-load-name">{RESOURCE_NAMES[k]}</span>
            <span class="admin-bar" role="meter" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(load * 100)} aria-label={`${RESOURCE_NAMES[k]} used`}>
              <span class="admin-bar-fill" style={{ width: `${Math.min(100, load * 100)}%` }} />
            </span>
            <span class="admin-load-figure">{(load * 100).toFixed(1)} % used</span>
            <span class="admin-load-figure">room for {formatUsers(more)}</span>
          </li>
        ))}
      </ul>
      <p class="muted small">
        A user of the workload below costs at peak {sci(r.perUser.cpu * values.cores * values.utilisation)} cores and{' '}
        {formatBytes(Math.round(r.perUser.memory * values.memGiB * 2 ** 30 * values.utilisation))}. CPU now: {sci(r.costs.cpuPerMessageNow)} core·s per message as sent now ({sci(r.costs.cpuPerSend)} per
        send, {sci(r.costs.cpuPerAppend)} per append, {sci(r.costs.cpuPerDelivery)} per delivery: the assumed split, scaled){' '}
        <span class={`admin-source is-${r.costs.cpuSource}`} data-testid="capacity-cpu-source" data-source={r.costs.cpuSource}>
          {CPU_SOURCES[r.costs.cpuSource]}
        </span>
        ; {formatBytes(Math.round(r.costs.bytesPerConn))} per connection{' '}
        <span class={`admin-source is-${r.costs.memorySource}`}>{r.costs.memorySource === 'live' ? 'measured live' : 'assumed: connections held still'}</span>
        {r.costs.cpuSource === 'live' ? `; ${r.costs.idleCores.toFixed(3)} cores when idle` : ''}. Percentages are of {values.cores} cores and {values.memGiB} GiB at {Math.round(values.utilisation * 100)} %.
        {heartbeatMix(latest.heartbeats)}
      </p>
      {isEditing && (
        <form class="admin-assumptions" onSubmit={(e) => e.preventDefault()}>
          <fieldset>
            <legend>Workload (per user)</legend>
            {WORKLOAD_FIELDS.map(field)}
          </fieldset>
          <fieldset>
            <legend>Node</legend>
            {NODE_FIELDS.map(field)}
          </fieldset>
          <fieldset>
            <legend>Costs when the window cannot measure them</legend>
            {COST_FIELDS.map(field)}
          </fieldset>
          <button class="ghost small" type="button" onClick={reset}>
            Reset to defaults
          </button>
        </form>
      )}
    </section>
  );
}
