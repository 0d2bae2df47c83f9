/**
 * `npm run cluster -- --nodes 3`: several Synchat nodes on this machine as one service (PROTOCOL.md "Several
 * nodes"; README "Several nodes"). Each node is `src/server/main.ts` in its own process, given the shared
 * PostgreSQL and Redis URLs, its own ports and data folder, and one shared media folder; other `SYNCHAT_*`
 * variables pass through to every node. Creates the PostgreSQL database when it is missing, waits until every node
 * answers `/api/gateways`, prints their URLs, and forwards SIGINT/SIGTERM to the nodes (a second signal kills
 * them), exiting when they have all exited.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';

/** Defaults of the flags and of the two service URLs. */
export const CLUSTER_DEFAULTS = {
  nodes: 3,
  /** Node i listens on HTTP basePort + 10·i and TCP basePort + 10·i + 1. */
  basePort: 8080,
  dataDir: './data',
  postgresUrl: 'postgres://postgres@127.0.0.1:5432/synchat',
  redisUrl: 'redis://127.0.0.1:6379',
} as const;

/** Most nodes one command starts. */
export const MAX_NODES = 16;
/** How long a node may take to answer `/api/gateways` after its start, in ms (the first start compiles with tsx). */
const START_TIMEOUT_MS = 60_000;
/** How long every node may take to list every node's gateways once all answer, in ms (PROTOCOL.md: within 30 s). */
const DIRECTORY_TIMEOUT_MS = 30_000;
/** Lines of a failed node's log shown with the failure. */
const LOG_TAIL_LINES = 20;

export const USAGE = `Usage: npm run cluster -- [--nodes N] [--base-port P] [--data-dir DIR]

Starts N Synchat nodes on this machine as one service: every node gets the same
SYNCHAT_POSTGRES_URL and SYNCHAT_REDIS_URL, its own ports and data folder, and one
shared SYNCHAT_MEDIA_DIR. Waits until each answers /api/gateways and prints its URLs.
Ctrl-C (SIGINT) or SIGTERM stops every node (a second one kills them).

  --nodes N       how many nodes, 1-${MAX_NODES} (default ${CLUSTER_DEFAULTS.nodes})
  --base-port P   node i (from 0) listens on HTTP P+10*i and TCP P+10*i+1 (default ${CLUSTER_DEFAULTS.basePort})
  --data-dir DIR  node i keeps its data in DIR/node-<i>, its log in DIR/node-<i>/server.log,
                  media in DIR/media (default ${CLUSTER_DEFAULTS.dataDir})
  -h, --help      this text

Environment:
  SYNCHAT_POSTGRES_URL  default ${CLUSTER_DEFAULTS.postgresUrl}
                        (the database is created when missing)
  SYNCHAT_REDIS_URL     default ${CLUSTER_DEFAULTS.redisUrl}
  SYNCHAT_MEDIA_DIR     default DIR/media, shared by every node
  SYNCHAT_HOST          listen address of every node (default 127.0.0.1)
  Other SYNCHAT_* variables are passed to every node; SYNCHAT_HTTP_PORT, SYNCHAT_TCP_PORT
  and SYNCHAT_DATA_DIR are set per node.
`;

/** A command-line mistake: printed with the usage, exit code 2. */
export class UsageError extends Error {}

/** What the flags ask for. */
export interface ClusterArgs {
  isHelp: boolean;
  nodes: number;
  basePort: number;
  dataDir: string;
}

/** Parses the flags (`process.argv.slice(2)`); throws {@link UsageError} naming the bad one. */
export function parseClusterArgs(argv: readonly string[]): ClusterArgs {
  let values: { nodes?: string; 'base-port'?: string; 'data-dir'?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { nodes: { type: 'string' }, 'base-port': { type: 'string' }, 'data-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const nodes = wholeNumber('--nodes', values.nodes, CLUSTER_DEFAULTS.nodes);
  if (nodes < 1 || nodes > MAX_NODES) throw new UsageError(`--nodes must be from 1 to ${MAX_NODES} (got ${values.nodes})`);
  const basePort = wholeNumber('--base-port', values['base-port'], CLUSTER_DEFAULTS.basePort);
  const lastPort = basePort + 10 * (nodes - 1) + 1;
  if (basePort < 1 || lastPort > 65_535) {
    throw new UsageError(`--base-port must leave room for ${nodes} node(s): ports ${basePort}..${lastPort} must lie within 1..65535`);
  }
  const dataDir = values['data-dir'] ?? CLUSTER_DEFAULTS.dataDir;
  if (dataDir === '') throw new UsageError('--data-dir must not be empty');
  return { isHelp: values.help ?? false, nodes, basePort, dataDir };
}

function wholeNumber(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d{1,6}$/.test(value)) throw new UsageError(`${flag} must be a whole number (got ${JSON.stringify(value)})`);
  return Number(value);
}

/** One node to start. */
export interface NodePlan {
  index: number;
  httpPort: number;
  tcpPort: number;
  dataDir: string;
  logFile: string;
  /** The node's `http`, `ws` and `tcp` URLs. */
  urls: { http: string; ws: string; tcp: string };
  /** The child's whole environment. */
  env: NodeJS.ProcessEnv;
}

/** The nodes `args` asks for, under `env` (the caller's environment). Pure: creates nothing. */
export function planNodes(args: ClusterArgs, env: NodeJS.ProcessEnv): NodePlan[] {
  const root = resolve(args.dataDir);
  const host = env.SYNCHAT_HOST || '127.0.0.1';
  // Wildcard listeners are reached on loopback from here.
  const reachHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const hostInUrl = reachHost.includes(':') ? `[${reachHost}]` : reachHost;
  const shared = {
    SYNCHAT_POSTGRES_URL: env.SYNCHAT_POSTGRES_URL || CLUSTER_DEFAULTS.postgresUrl,
    SYNCHAT_REDIS_URL: env.SYNCHAT_REDIS_URL || CLUSTER_DEFAULTS.redisUrl,
    SYNCHAT_MEDIA_DIR: env.SYNCHAT_MEDIA_DIR || join(root, 'media'),
  };
  return Array.from({ length: args.nodes }, (_, index) => {
    const httpPort = args.basePort + 10 * index;
    const tcpPort = httpPort + 1;
    const dataDir = join(root, `node-${index}`);
    return {
      index,
      httpPort,
      tcpPort,
      dataDir,
      logFile: join(dataDir, 'server.log'),
      urls: { http: `http://${hostInUrl}:${httpPort}`, ws: `ws://${hostInUrl}:${httpPort}/ws`, tcp: `tcp://${hostInUrl}:${tcpPort}` },
      env: { ...env, ...shared, SYNCHAT_HTTP_PORT: String(httpPort), SYNCHAT_TCP_PORT: String(tcpPort), SYNCHAT_DATA_DIR: dataDir },
    };
  });
}

/** A URL with its password masked, for printing. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/** Creates the database of `url` when it does not exist (connecting to the server's `postgres` database). */
async function ensureDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ''));
  if (!name) throw new Error(`SYNCHAT_POSTGRES_URL names no database: ${maskUrl(url)}`);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString(), connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (err) {
    throw new Error(`PostgreSQL is not reachable at ${maskUrl(admin.toString())}: ${(err as Error).message}`);
  }
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount) return;
    await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
    console.log(`cluster: created database ${name}`);
  } catch (err) {
    // 42P04 duplicate_database: someone else created it meanwhile.
    if ((err as { code?: string }).code !== '42P04') throw err;
  } finally {
    await client.end();
  }
}

/** A started node. */
interface RunningNode {
  plan: NodePlan;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited: boolean;
}

function startNode(plan: NodePlan, repoRoot: string): RunningNode {
  mkdirSync(plan.dataDir, { recursive: true });
  const log = openSync(plan.logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server/main.ts'], { cwd: repoRoot, env: plan.env, stdio: ['ignore', log, log] });
  closeSync(log); // the child holds its own copy
  const node: RunningNode = { plan, child, hasExited: false, exited: undefined! };
  node.exited = new Promise((resolveExit) =>
    child.once('exit', (code, signal) => {
      node.hasExited = true;
      resolveExit({ code, signal });
    }),
  );
  return node;
}

/** The gateway URLs a node lists, or undefined when it does not answer (yet). */
async function listedUrls(plan: NodePlan): Promise<string[] | undefined> {
  try {
    const res = await fetch(`${plan.urls.http}/api/gateways`, { signal: AbortSignal.timeout(2000) });
    const body = (await res.json()) as { ret?: number; gateways?: { url?: unknown }[] };
    if (res.ok && body.ret === 0 && Array.isArray(body.gateways)) return body.gateways.map((g) => String(g?.url));
  } catch {
    // not listening yet
  }
  return undefined;
}

/** Resolves when the node answers `/api/gateways`; rejects when it exits first or does not answer in time. */
async function waitUntilAnswering(node: RunningNode): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (node.hasExited) {
      const { code, signal } = await node.exited;
      throw new Error(`exited (${signal ?? `code ${code}`}) before answering /api/gateways`);
    }
    if (await listedUrls(node.plan)) return;
    if (Date.now() > deadline) throw new Error(`did not answer /api/gateways within ${START_TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Waits until every node's `/api/gateways` names every node (the nodes found each other through Redis); returns
 * the nodes that still do not, with what they list, after {@link DIRECTORY_TIMEOUT_MS}.
 */
async function waitUntilListed(plans: readonly NodePlan[]): Promise<{ plan: NodePlan; missing: number }[]> {
  const deadline = Date.now() + DIRECTORY_TIMEOUT_MS;
  for (;;) {
    const short: { plan: NodePlan; missing: number }[] = [];
    for (const plan of plans) {
      // By port: a node names itself by its SYNCHAT_HOST, which may be a wildcard address.
      const ports = new Set((await listedUrls(plan))?.map(portOf));
      const missing = plans.filter((p) => !ports.has(p.httpPort)).length;
      if (missing > 0) short.push({ plan, missing });
    }
    if (short.length === 0 || Date.now() > deadline) return short;
    await new Promise((r) => setTimeout(r, 500));
  }
}

function portOf(url: string): number | undefined {
  try {
    return Number(new URL(url).port) || undefined;
  } catch {
    return undefined;
  }
}

function describeNode(plan: NodePlan): string {
  return `node ${plan.index} (${plan.urls.http})`;
}

function logTail(file: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    return lines.slice(-LOG_TAIL_LINES).map((l) => `    ${l}`).join('\n');
  } catch {
    return '    (no log)';
  }
}

async function main(): Promise<number> {
  let args: ClusterArgs;
  try {
    args = parseClusterArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`cluster: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (args.isHelp) {
    console.log(USAGE);
    return 0;
  }
  const plans = planNodes(args, process.env);
  const { SYNCHAT_POSTGRES_URL: postgresUrl, SYNCHAT_REDIS_URL: redisUrl, SYNCHAT_MEDIA_DIR: mediaDir } = plans[0]!.env as Record<string, string>;
  try {
    await ensureDatabase(postgresUrl);
  } catch (err) {
    console.error(`cluster: ${(err as Error).message}`);
    return 1;
  }
  mkdirSync(mediaDir, { recursive: true });

  const repoRoot = resolve(import.meta.dirname, '..');
  const shown = (p: string) => relative(process.cwd(), p) || '.';
  const nodes = plans.map((plan) => startNode(plan, repoRoot));
  let signals = 0;
  const forward = (signal: NodeJS.Signals) => {
    signals++;
    // A second signal: the user does not want to wait for the drain.
    for (const n of nodes) if (!n.hasExited) n.child.kill(signals > 1 ? 'SIGKILL' : signal);
  };
  process.on('SIGINT', () => forward('SIGINT'));
  process.on('SIGTERM', () => forward('SIGTERM'));

  const started = await Promise.allSettled(nodes.map(waitUntilAnswering));
  const failed = started.flatMap((r, i) => (r.status === 'rejected' ? [{ node: nodes[i]!, reason: (r.reason as Error).message }] : []));
  if (signals > 0 || failed.length > 0) {
    for (const { node, reason } of failed) {
      console.error(`cluster: ${describeNode(node.plan)} ${reason}; its log: ${shown(node.plan.logFile)}\n${logTail(node.plan.logFile)}`);
    }
    if (signals === 0) forward('SIGTERM');
    await Promise.all(nodes.map((n) => n.exited));
    return 1;
  }

  console.log(`Synchat cluster: ${nodes.length} node(s), PostgreSQL ${maskUrl(postgresUrl)}, Redis ${maskUrl(redisUrl)}, media ${shown(mediaDir)}`);
  for (const n of nodes) {
    const { urls } = n.plan;
    console.log(`  node ${n.plan.index}  ${urls.http}  ${urls.ws}  ${urls.tcp}  log ${shown(n.plan.logFile)}`);
  }
  const short = await waitUntilListed(plans);
  for (const { plan, missing } of short) {
    console.warn(`cluster: ${describeNode(plan)} does not list ${missing} of the ${plans.length} nodes in /api/gateways after ${DIRECTORY_TIMEOUT_MS / 1000} s (is Redis reachable at ${maskUrl(redisUrl)}?)`);
  }
  if (short.length === 0) console.log(`Every node lists all ${plans.length} nodes in /api/gateways.`);
  console.log('Ctrl-C stops every node.');

  // Report a node that dies on its own; the others keep serving. Exit once every node has exited.
  const outcomes = await Promise.all(
    nodes.map(async (n) => {
      const { code, signal } = await n.exited;
      if (signals === 0) console.error(`cluster: ${describeNode(n.plan)} exited (${signal ?? `code ${code}`}); its log: ${shown(n.plan.logFile)}`);
      return code === 0 || (signals > 0 && signal !== null);
    }),
  );
  return outcomes.every(Boolean) ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error('cluster:', err?.stack ?? err);
      process.exit(1);
    },
  );
}
