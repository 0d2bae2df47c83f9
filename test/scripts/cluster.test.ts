// `npm run cluster` (scripts/cluster.ts): its flags and plan alone, then the script itself — usage errors, a node
// that fails to start named with its log, and two nodes started, answering and stopped by SIGINT (PostgreSQL and
// a Redis of the test's own; skipped without them, failing under CI=true).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { CLUSTER_DEFAULTS, MAX_NODES, maskUrl, parseClusterArgs, planNodes, UsageError } from '../../scripts/cluster.ts';
import { startOwnRedis } from '../helpers/nodes.ts';
import { createTestDatabase, requirePostgres, requireRedis } from '../helpers/services.ts';

const ROOT = resolve(import.meta.dirname, '../..');

/** Runs the script to its end (or until `until` shows in its stdout, then `onReady`); returns its exit and output. */
function runScript(args: string[], env: Record<string, string> = {}, onReady?: { until: string; then(pid: number): void }) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/cluster.ts', ...args], { cwd: ROOT, env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
    if (onReady && stdout.includes(onReady.until)) {
      onReady.then(child.pid!);
      onReady = undefined;
    }
  });
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => child.once('exit', (code) => done({ code, stdout, stderr })));
}

/** A base port whose node ports (base + 10·i and + 1, i < nodes) are all free now. */
async function freeBasePort(nodes: number): Promise<number> {
  const isFree = (port: number) =>
    new Promise<boolean>((ok) => {
      const s = createServer();
      s.once('error', () => ok(false));
      s.listen(port, '127.0.0.1', () => s.close(() => ok(true)));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    const ports = Array.from({ length: nodes }, (_, i) => [base + 10 * i, base + 10 * i + 1]).flat();
    if ((await Promise.all(ports.map(isFree))).every(Boolean)) return base;
  }
  throw new Error('no free port range found');
}

describe('cluster flags', () => {
  it('defaults to three nodes from port 8080 under ./data', () => {
    assert.deepEqual(parseClusterArgs([]), { isHelp: false, nodes: 3, basePort: 8080, dataDir: './data' });
    assert.equal(parseClusterArgs(['-h']).isHelp, true);
    assert.deepEqual(parseClusterArgs(['--nodes', '16', '--base-port', '9000', '--data-dir', '/tmp/x']), { isHelp: false, nodes: 16, basePort: 9000, dataDir: '/tmp/x' });
  });

  const BAD: [string, string[], RegExp][] = [
    ['no nodes', ['--nodes', '0'], /--nodes must be from 1 to 16/],
    ['too many nodes', ['--nodes', String(MAX_NODES + 1)], /--nodes must be from 1 to 16/],
    ['a fraction', ['--nodes', '2.5'], /--nodes must be a whole number/],
    ['a word', ['--nodes', 'three'], /--nodes must be a whole number/],
    ['a negative number', ['--nodes=-1'], /--nodes must be a whole number/],
    ['a missing value', ['--nodes'], /argument missing/],
    ['port zero', ['--base-port', '0'], /--base-port must leave room/],
    ['ports past 65535', ['--nodes', '3', '--base-port', '65520'], /65520\.\.65541 must lie within 1\.\.65535/],
    ['an unknown flag', ['--node', '3'], /Unknown option '--node'/],
    ['a positional argument', ['3'], /positional/],
    ['an empty data folder', ['--data-dir', ''], /--data-dir must not be empty/],
  ];
  for (const [what, argv, message] of BAD) {
    it(`refuses ${what}`, () => {
      assert.throws(() => parseClusterArgs(argv), (err: Error) => err instanceof UsageError && message.test(err.message));
    });
  }

  it('plans node i on ports base + 10·i and + 1, its own data folder, and shared URLs and media', () => {
    const plans = planNodes({ isHelp: false, nodes: 3, basePort: 8080, dataDir: '/srv/synchat' }, { SYNCHAT_LOG_LEVEL: 'warn', SYNCHAT_HTTP_PORT: '1', PATH: '/bin' });
    assert.deepEqual(
      plans.map((p) => [p.httpPort, p.tcpPort, p.dataDir, p.logFile]),
      [
        [8080, 8081, '/srv/synchat/node-0', '/srv/synchat/node-0/server.log'],
        [8090, 8091, '/srv/synchat/node-1', '/srv/synchat/node-1/server.log'],
        [8100, 8101, '/srv/synchat/node-2', '/srv/synchat/node-2/server.log'],
      ],
    );
    assert.deepEqual(plans[1]!.urls, { http: 'http://127.0.0.1:8090', ws: 'ws://127.0.0.1:8090/ws', tcp: 'tcp://127.0.0.1:8091' });
    for (const p of plans) {
      assert.equal(p.env.SYNCHAT_POSTGRES_URL, CLUSTER_DEFAULTS.postgresUrl);
      assert.equal(p.env.SYNCHAT_REDIS_URL, CLUSTER_DEFAULTS.redisUrl);
      assert.equal(p.env.SYNCHAT_MEDIA_DIR, '/srv/synchat/media');
      assert.equal(p.env.SYNCHAT_LOG_LEVEL, 'warn', 'other SYNCHAT_* pass through');
      assert.equal(p.env.PATH, '/bin');
      assert.equal(p.env.SYNCHAT_HTTP_PORT, String(p.httpPort), 'ports are set per node');
      assert.equal(p.env.SYNCHAT_DATA_DIR, p.dataDir);
    }
  });

  it('takes the service URLs, media folder and host from the environment', () => {
    const env = { SYNCHAT_POSTGRES_URL: 'postgres://u:pw@db/chat', SYNCHAT_REDIS_URL: 'redis://cache:6380', SYNCHAT_MEDIA_DIR: '/nfs/media', SYNCHAT_HOST: '0.0.0.0' };
    const [plan] = planNodes({ isHelp: false, nodes: 1, basePort: 7000, dataDir: 'd' }, env);
    assert.equal(plan!.env.SYNCHAT_POSTGRES_URL, env.SYNCHAT_POSTGRES_URL);
    assert.equal(plan!.env.SYNCHAT_REDIS_URL, env.SYNCHAT_REDIS_URL);
    assert.equal(plan!.env.SYNCHAT_MEDIA_DIR, '/nfs/media');
    assert.equal(plan!.urls.http, 'http://127.0.0.1:7000', 'a wildcard listener is reached on loopback');
    assert.equal(maskUrl(env.SYNCHAT_POSTGRES_URL), 'postgres://u:***@db/chat');
  });
});

describe('npm run cluster', () => {
  it('prints its usage for --help and exits 0', async () => {
    const r = await runScript(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^Usage: npm run cluster -- \[--nodes N\]/);
  });

  it('exits 2 with the reason and the usage when --nodes is out of range, starting nothing', async () => {
    const r = await runScript(['--nodes', '17']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cluster: --nodes must be from 1 to 16 \(got 17\)/);
    assert.match(r.stderr, /Usage:/);
    assert.equal(r.stdout, '');
  });
});

describe('npm run cluster with PostgreSQL and Redis', { skip: (await requirePostgres()) ?? (await requireRedis()) }, () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  function dataDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'synchat-cluster-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  it('creates the database, and names the node that does not start and its log', async () => {
    const db = await createTestDatabase('synchat_cluster_test');
    await db.drop(); // a name that is free: the script must create it
    cleanups.push(db.drop);
    const dir = dataDir();
    // An unknown SYNCHAT_ variable makes every node refuse to start (src/server/config.ts).
    const r = await runScript(['--nodes', '2', '--base-port', String(await freeBasePort(2)), '--data-dir', dir], {
      SYNCHAT_POSTGRES_URL: db.url,
      SYNCHAT_NOT_A_SETTING: '1',
    });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /created database synchat_cluster_test_/);
    for (const i of [0, 1]) {
      assert.match(r.stderr, new RegExp(`cluster: node ${i} \\(http://127\\.0\\.0\\.1:\\d+\\) exited \\(code \\d+\\) before answering /api/gateways; its log: \\S*node-${i}/server\\.log`));
    }
    assert.match(r.stderr, /SYNCHAT_NOT_A_SETTING/, "the log's tail says why");
  });

  it('starts two nodes that list each other, prints their URLs, and stops them on SIGINT', async () => {
    const db = await createTestDatabase('synchat_cluster_test');
    cleanups.push(db.drop);
    const redis = await startOwnRedis();
    cleanups.push(redis.kill);
    const base = await freeBasePort(2);
    let gateways: unknown[] = [];
    const r = await runScript(
      ['--nodes', '2', '--base-port', String(base), '--data-dir', dataDir()],
      { SYNCHAT_POSTGRES_URL: db.url, SYNCHAT_REDIS_URL: redis.url, SYNCHAT_WORKERS: '0', SYNCHAT_LOG_LEVEL: 'warn' },
      {
        until: 'Ctrl-C stops every node.',
        then(pid) {
          void fetch(`http://127.0.0.1:${base + 10}/api/gateways`)
            .then((res) => res.json())
            .then((body: any) => (gateways = body.gateways))
            .finally(() => process.kill(pid, 'SIGINT'));
        },
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`node 0  http://127\\.0\\.0\\.1:${base}  ws://127\\.0\\.0\\.1:${base}/ws  tcp://127\\.0\\.0\\.1:${base + 1}`));
    assert.match(r.stdout, new RegExp(`node 1  http://127\\.0\\.0\\.1:${base + 10}  ws://127\\.0\\.0\\.1:${base + 10}/ws  tcp://127\\.0\\.0\\.1:${base + 11}`));
    assert.match(r.stdout, /Every node lists all 2 nodes in \/api\/gateways\./);
    assert.equal(gateways.length, 6, 'node 1 lists both nodes');
    assert.deepEqual(gateways[0], { transport: 'tcp', url: `tcp://127.0.0.1:${base + 11}` }, 'own node first');
  });
});
