/**
 * The admin dashboard (docs/operations.md "Dashboard"): signs in with the admin token or an admin user's chat
 * session, reads `/api/admin/stats` once a second, and shows every node's last five minutes — charts, a table of
 * nodes and of processes, a draining badge — and the capacity estimate of the node it picks.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import type { AdminStats } from '../../../src/ops/admin-stats.ts';
import { connectionsOf } from '../../../src/ops/live-capacity.ts';
import type { NodeSnapshot, ProcessSnapshot } from '../../../src/ops/snapshot.ts';
import { formatBytes } from '../format.ts';
import { chatSession, fetchStats, rememberToken, StatsError, storedCredential, type Credential } from './access.ts';
import { CapacityPanel } from './capacity-panel.tsx';
import { History, type NodeHistory } from './history.ts';
import { LiveChart, type Series } from './live-chart.tsx';

/** How often the page asks, in ms: the nodes publish once a second. */
const POLL_MS = 1000;
/** A node whose newest snapshot is older than this is shown as stale, in ms. */
const STALE_MS = 5000;

/** The page: the sign-in form until a credential is accepted, then the dashboard. */
export function AdminApp() {
  const [credential, setCredential] = useState<Credential | undefined>();
  const [isLoading, setLoading] = useState(true);
  const [refusal, setRefusal] = useState('');
  useEffect(() => {
    void storedCredential().then((c) => {
      setCredential(c);
      setLoading(false);
    });
  }, []);
  if (isLoading) return <p class="admin-loading muted">Loading…</p>;
  if (!credential) return <SignIn notice={refusal} onCredential={(c) => (setRefusal(''), setCredential(c))} />;
  return (
    <Dashboard
      credential={credential}
      onRefused={(why) => {
        if (credential.kind === 'token') rememberToken('');
        setRefusal(why);
        setCredential(undefined);
      }}
      onSignOut={() => {
        rememberToken('');
        setCredential(undefined);
      }}
    />
  );
}

function SignIn(props: { notice: string; onCredential: (c: Credential) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState('');
  const useSession = async () => {
    const c = await chatSession();
    if (c) props.onCredential(c);
    else setError('No chat session in this browser: sign in to the chat app first, or use the admin token.');
  };
  return (
    <main class="admin-signin">
      <form
        class="admin-card"
        onSubmit={(e) => {
          e.preventDefault();
          if (!token.trim()) return setError('Enter the admin token.');
          rememberToken(token.trim());
          props.onCredential({ bearer: token.trim(), kind: 'token' });
        }}
      >
        <h1>Synchat operations</h1>
        <p class="muted">The dashboard needs the server's admin token (SYNCHAT_ADMIN_TOKEN) or the chat session of an admin user (SYNCHAT_ADMIN_USERS).</p>
        {props.notice && (
          <p class="form-error" role="alert" data-testid="admin-refusal">
            {props.notice}
          </p>
        )}
        <label>
          Admin token
          <input type="password" autocomplete="off" data-testid="admin-token" value={token} onInput={(e) => setToken((e.target as HTMLInputElement).value)} />
        </label>
        {error && <p class="form-error">{error}</p>}
        <button class="primary" type="submit" data-testid="admin-token-submit">
          Open the dashboard
        </button>
        <button class="ghost" type="button" data-testid="admin-use-session" onClick={() => void useSession()}>
          Use my chat session
        </button>
      </form>
    </main>
  );
}

const NODE_COLUMNS = ['Node', 'State', 'Up', 'Users online', 'TCP', 'WebSocket', 'Long-poll', 'Sends/s', 'Deliveries/s', 'Send→commit p50/p99 ms', 'Commit→delivery p99 ms', 'fsync p99 ms'];
const PROCESS_COLUMNS = ['Process', 'CPU', 'RSS', 'Heap', 'Loop delay p99', 'TCP', 'WebSocket', 'Long-poll', 'Outbound queued'];

function TableHead(props: { columns: string[] }) {
  return (
    <thead>
      <tr>
        {props.columns.map((c) => (
          <th key={c} scope="col">
            {c}
          </th>
        ))}
      </tr>
    </thead>
  );
}

/** `host:pid` of a node id (`host:pid:uuid`): enough to tell nodes apart on a chart. */
function shortNode(nodeId: string): string {
  return nodeId.split(':').slice(0, 2).join(':');
}

function processLabel(node: NodeSnapshot, p: ProcessSnapshot, isMany: boolean): string {
  return `${isMany ? shortNode(node.nodeId) + ' ' : ''}${p.role} ${p.pid}`;
}

function rate(n: number | undefined): string {
  if (n === undefined) return '–';
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1);
}

function ms(n: number): string {
  return n >= 100 ? Math.round(n).toString() : n.toFixed(1);
}

function uptime(s: NodeSnapshot): string {
  const sec = Math.max(0, Math.round((s.at - s.startedAt) / 1000));
  if (sec < 120) return `${sec} s`;
  if (sec < 7200) return `${Math.round(sec / 60)} min`;
  return `${(sec / 3600).toFixed(1)} h`;
}

/** The charts' series from every node's history, x in seconds before the newest snapshot. */
function seriesOf(nodes: NodeHistory[]): Record<string, Series[]> {
  const ref = Math.max(0, ...nodes.map((n) => n.snapshots.last?.at ?? 0));
  const x = (at: number) => (at - ref) / 1000;
  const isMany = nodes.length > 1;
  const suffix = (n: NodeHistory) => (isMany ? ` · ${shortNode(n.report.snapshot.nodeId)}` : '');
  const out: Record<string, Series[]> = { traffic: [], connections: [], users: [], latency: [], loop: [], memory: [], cpu: [] };
  for (const n of nodes) {
    const rates = n.rates.toArray();
    const snaps = n.snapshots.toArray();
    const sx = suffix(n);
    out.traffic!.push({ label: `sends/s${sx}`, points: rates.map((r) => ({ x: x(r.at), y: r.sendsPerSec })) });
    out.traffic!.push({ label: `deliveries/s${sx}`, points: rates.map((r) => ({ x: x(r.at), y: r.deliveriesPerSec })), isDashed: true });
    const sum = (s: NodeSnapshot, f: (p: ProcessSnapshot) => number) => s.processes.reduce((t, p) => t + f(p), 0);
    out.connections!.push({ label: `TCP${sx}`, points: snaps.map((s) => ({ x: x(s.at), y: sum(s, (p) => p.connections.tcp) })) });
    out.connections!.push({ label: `WebSocket${sx}`, points: snaps.map((s) => ({ x: x(s.at), y: sum(s, (p) => p.connections.ws) })) });
    out.connections!.push({ label: `long-poll${sx}`, points: snaps.map((s) => ({ x: x(s.at), y: sum(s, (p) => p.parkedPolls) })), isDashed: true });
    out.users!.push({ label: `users online${sx}`, points: snaps.map((s) => ({ x: x(s.at), y: s.usersOnline })) });
    out.latency!.push({ label: `send→commit p99${sx}`, points: snaps.map((s) => ({ x: x(s.at), y: s.latencyMs.sendToCommitP99 })) });
    out.latency!.push({ label: `commit→delivery p99${sx}`, points: snaps.map((s) => ({ x: x(s.at), y: s.latencyMs.commitToDeliveryP99 })), isDashed: true });
    const last = n.snapshots.last;
    for (const p of last?.processes ?? []) {
      const label = processLabel(last!, p, isMany);
      const of = (f: (q: ProcessSnapshot) => number) =>
        snaps.flatMap((s) => {
          const q = s.processes.find((y) => y.pid === p.pid);
          return q ? [{ x: x(s.at), y: f(q) }] : [];
        });
      out.loop!.push({ label, points: of((q) => q.eventLoopDelayP99Ms) });
      out.memory!.push({ label: `RSS ${label}`, points: of((q) => q.rssBytes / 2 ** 20) });
      out.memory!.push({ label: `heap ${label}`, points: of((q) => q.heapUsedBytes / 2 ** 20), isDashed: true });
      out.cpu!.push({ label, points: rates.flatMap((r) => (r.coresByPid[p.pid] === undefined ? [] : [{ x: x(r.at), y: r.coresByPid[p.pid]! * 100 }])) });
    }
  }
  return out;
}

function Dashboard(props: { credential: Credential; onRefused: (why: string) => void; onSignOut: () => void }) {
  const history = useRef(new History());
  const [stats, setStats] = useState<AdminStats | undefined>();
  const [trouble, setTrouble] = useState('');
  const [picked, setPicked] = useState<string | undefined>();
  const refused = useRef(props.onRefused);
  refused.current = props.onRefused;

  useEffect(() => {
    let isStopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const abort = new AbortController();
    const poll = async () => {
      const started = Date.now();
      try {
        const s = await fetchStats(props.credential, abort.signal);
        if (isStopped) return;
        history.current.add(s.nodes);
        setStats(s);
        setTrouble('');
      } catch (err) {
        if (isStopped) return;
        const e = err as StatsError;
        if (e.isRefusal) return refused.current(e.message);
        setTrouble(e.message);
      }
      timer = setTimeout(() => void poll(), Math.max(0, POLL_MS - (Date.now() - started)));
    };
    void poll();
    return () => {
      isStopped = true;
      abort.abort();
      clearTimeout(timer);
    };
  }, [props.credential]);

  const nodes = stats ? history.current.nodes(stats.nodes) : [];
  const series = seriesOf(nodes);
  const chosen = nodes.find((n) => n.report.snapshot.nodeId === picked) ?? nodes[0];
  const newest = Math.max(0, ...nodes.map((n) => n.snapshots.last?.at ?? 0));

  return (
    <div class="admin">
      <header class="admin-header">
        <h1>Synchat operations</h1>
        <span class={`admin-live${trouble ? ' is-trouble' : ''}`} data-testid="admin-status" role="status">
          {trouble ? `Not updating: ${trouble}` : stats ? `Live · ${nodes.length} node${nodes.length === 1 ? '' : 's'}` : 'Connecting…'}
        </span>
        <span class="grow" />
        <span class="muted small">
          {props.credential.kind === 'session' ? `as ${props.credential.username ?? 'chat user'}` : 'with the admin token'}
        </span>
        <button class="ghost small" type="button" onClick={props.onSignOut}>
          Sign out
        </button>
      </header>
      <main class="admin-main">
        <section class="admin-card" aria-labelledby="nodes-title">
          <h2 id="nodes-title">Nodes</h2>
          <div class="admin-table-wrap">
            <table class="admin-table" data-testid="nodes-table">
              <TableHead columns={NODE_COLUMNS} />
              <tbody>
                {nodes.map((n) => {
                  const s = n.snapshots.last!;
                  const r = n.rates.last;
                  const sum = (f: (p: ProcessSnapshot) => number) => s.processes.reduce((t, p) => t + f(p), 0);
                  const isStale = newest - s.at > STALE_MS;
                  const id = s.nodeId;
                  return (
                    <tr key={id} data-testid="node-row" data-node={id} class={n === chosen ? 'is-picked' : ''}>
                      <th scope="row">
                        <button class="admin-link" type="button" title={id} onClick={() => setPicked(id)}>
                          {shortNode(id)}
                        </button>
                        {id === stats?.nodeId && <span class="pill">this node</span>}
                      </th>
                      <td>
                        {s.isDraining ? (
                          <span class="admin-state is-draining" data-testid="draining-badge">
                            draining
                          </span>
                        ) : isStale ? (
                          <span class="admin-state is-stale">stale</span>
                        ) : (
                          <span class="admin-state is-up">up</span>
                        )}
                      </td>
                      <td>{uptime(s)}</td>
                      <td data-testid="node-users-online">{s.usersOnline}</td>
                      <td data-testid="node-tcp">{sum((p) => p.connections.tcp)}</td>
                      <td data-testid="node-ws">{sum((p) => p.connections.ws)}</td>
                      <td data-testid="node-polls">{sum((p) => p.parkedPolls)}</td>
                      <td data-testid="node-sends-per-sec">{rate(r?.sendsPerSec)}</td>
                      <td data-testid="node-deliveries-per-sec">{rate(r?.deliveriesPerSec)}</td>
                      <td>
                        {ms(s.latencyMs.sendToCommitP50)} / {ms(s.latencyMs.sendToCommitP99)}
                      </td>
                      <td>{ms(s.latencyMs.commitToDeliveryP99)}</td>
                      <td>{ms(s.latencyMs.fsyncP99)}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
          <p class="muted small" data-testid="admin-totals">
            {nodes.reduce((t, n) => t + connectionsOf(n.snapshots.last!), 0).toLocaleString('en-US')} connections and{' '}
            {nodes.reduce((t, n) => t + n.snapshots.last!.usersOnline, 0).toLocaleString('en-US')} users online in all; totals since start:{' '}
            {nodes.reduce((t, n) => t + n.snapshots.last!.totals.sends, 0).toLocaleString('en-US')} sends,{' '}
            {nodes.reduce((t, n) => t + n.snapshots.last!.totals.deliveries, 0).toLocaleString('en-US')} deliveries.
          </p>
        </section>

        {chosen && <CapacityPanel node={chosen} />}

        <div class="admin-charts">
          <LiveChart testId="chart-traffic" title="Sends and deliveries" unit="per second" series={series.traffic!} />
          <LiveChart testId="chart-connections" title="Connections by transport" unit="open" series={series.connections!} />
          <LiveChart testId="chart-users" title="Users online" unit="users" series={series.users!} />
          <LiveChart testId="chart-latency" title="Latency p99" unit="ms" series={series.latency!} />
          <LiveChart testId="chart-cpu" title="CPU per process" unit="% of a core" series={series.cpu!} />
          <LiveChart testId="chart-loop" title="Event-loop delay p99 per process" unit="ms" series={series.loop!} />
          <LiveChart testId="chart-memory" title="Memory per process (RSS, heap dashed)" unit="MiB" series={series.memory!} />
        </div>

        <section class="admin-card" aria-labelledby="processes-title">
          <h2 id="processes-title">Processes</h2>
          <div class="admin-table-wrap">
            <table class="admin-table" data-testid="processes-table">
              <TableHead columns={PROCESS_COLUMNS} />
              <tbody>
                {nodes.flatMap((n) => {
                  const s = n.snapshots.last!;
                  const cores = n.rates.last?.coresByPid ?? {};
                  return s.processes.map((p) => (
                    <tr key={`${s.nodeId}/${p.pid}`} data-testid="process-row" data-pid={p.pid}>
                      <th scope="row">{processLabel(s, p, nodes.length > 1)}</th>
                      <td data-testid="process-cpu">{cores[p.pid] === undefined ? '–' : `${(cores[p.pid]! * 100).toFixed(1)} %`}</td>
                      <td data-testid="process-rss">{formatBytes(p.rssBytes)}</td>
                      <td>{formatBytes(p.heapUsedBytes)}</td>
                      <td>{ms(p.eventLoopDelayP99Ms)} ms</td>
                      <td>{p.connections.tcp}</td>
                      <td>{p.connections.ws}</td>
                      <td>{p.parkedPolls}</td>
                      <td>{formatBytes(p.outboundBytes)}</td>
                    </tr>
                  ));
                })}
              </tbody>
            </table>
          </div>
        </section>
      </main>
    </div>
  );
}
