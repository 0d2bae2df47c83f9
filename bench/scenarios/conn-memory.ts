/**
 * `conn-memory`: memory per idle, authenticated long connection (raw TCP or WebSocket), in each gateway process
 * and in the kernel. Starts a cluster (SYNCHAT_WORKERS = gateways, fixed ports, `--inspect` so each gateway can be
 * asked for `process.memoryUsage()` after a full GC), logs in a few users, opens N connections from several client
 * processes and source addresses 127.0.0.2…, AUTHs them all, and compares each gateway before and after.
 *
 *   npx tsx bench/scenarios/conn-memory.ts --transport tcp|ws --conns 10000 [--gateways G] [--clients C]
 *        [--users 200] [--sources 8] [--hold 5] [--json FILE]
 *   npx tsx bench/scenarios/conn-memory.ts --transport tcp --conns 1000 --slow-readers true [--rounds 60]
 *
 * With `--slow-readers true` every connection stops reading after AUTH_OK while another user chats with their
 * users (`--rounds` rounds of one 15 KiB message to each user): the gateways' memory is sampled 8 times
 * and must level off (bounded outbound buffers) instead of growing with the chat.
 *
 * One process may hold 20,000 files here: a gateway takes at most ~17,000 connections (so 50k needs 3), a client
 * process at most 12,500. Bounded: every child is killed by PID at the end or after 15 minutes.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ClientJob, ClientReport } from '../conn-memory/client.ts';
import { Inspector, type InspectedMemory } from '../conn-memory/inspector.ts';
import { call, parseArgs } from '../lib/proc.ts';

const DEFAULTS = { transport: 'tcp', conns: '10000', gateways: '', clients: '', users: '200', sources: '8', hold: '5', json: '', 'slow-readers': 'false', rounds: '60' };
const MAX_PER_GATEWAY = 17_000;
const MAX_PER_CLIENT = 12_500;
const WATCHDOG_MS = 15 * 60_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Bytes held by every kernel slab cache (sockets, inodes, dentries, epoll items...), from /proc/slabinfo. */
function slabBytes(): number | undefined {
  try {
    let total = 0;
    for (const line of readFileSync('/proc/slabinfo', 'utf8').split('\n').slice(2)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 3) total += Number(f[2]) * Number(f[3]);
    }
    return total;
  } catch {
    return undefined;
  }
}

/** TCP buffer memory in use, in bytes (`mem` pages of /proc/net/sockstat). */
function sockstatTcpBytes(): number {
  const m = /TCP:.* mem (\d+)/.exec(readFileSync('/proc/net/sockstat', 'utf8'));
  return m ? Number(m[1]) * 4096 : 0;
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

const kib = (bytes: number) => +(bytes / 1024).toFixed(2);
const mib = (bytes: number) => +(bytes / 2 ** 20).toFixed(1);

interface GatewaySample {
  mem: InspectedMemory;
  fds: number;
}

async function sampleGateways(inspectors: Inspector[]): Promise<GatewaySample[]> {
  const out = [];
  for (const i of inspectors) {
    const mem = await i.memory();
    out.push({ mem, fds: fdCount(mem.pid) });
  }
  return out;
}

/** Runs the scenario. */
export async function run(argv: string[]): Promise<void> {
  const o = parseArgs(argv, DEFAULTS);
  const transport = o.transport === 'ws' ? 'ws' : 'tcp';
  const conns = Number(o.conns);
  const gateways = Number(o.gateways || Math.max(1, Math.ceil(conns / MAX_PER_GATEWAY)));
  const clients = Number(o.clients || Math.max(1, Math.ceil(conns / MAX_PER_CLIENT)));
  const users = Number(o.users);
  const sources = Array.from({ length: Number(o.sources) }, (_, i) => `127.0.0.${i + 2}`);
  if (conns / gateways > MAX_PER_GATEWAY) throw new Error(`--gateways ${gateways}: more than ${MAX_PER_GATEWAY} connections per gateway`);
  if (conns / clients > MAX_PER_CLIENT) throw new Error(`--clients ${clients}: more than ${MAX_PER_CLIENT} connections per client process`);

  const httpPort = 10_000 + Math.floor(Math.random() * 8_000);
  const tcpPort = httpPort + 1;
  // The primary's inspector listens here; node:cluster gives gateway k the port inspectBase + k.
  const inspectBase = httpPort + 2;
  const dataDir = mkdtempSync(join(tmpdir(), 'synchat-conn-memory-'));
  const children: ChildProcess[] = [];
  const inspectors: Inspector[] = [];
  let server: ChildProcess | undefined;
  const abort = (why: string) => {
    console.error(`conn-memory: ${why}; killing children`);
    for (const c of children) c.kill('SIGKILL');
    server?.kill('SIGTERM');
    process.exit(1);
  };
  const watchdog = setTimeout(() => abort('watchdog: 15 minutes passed'), WATCHDOG_MS);
  process.once('SIGINT', () => abort('interrupted'));
  process.once('SIGTERM', () => abort('terminated'));

  try {
    server = spawn(process.execPath, ['--import', 'tsx', `--inspect=127.0.0.1:${inspectBase}`, 'src/server/main.ts'], {
      env: {
        ...process.env,
        SYNCHAT_WORKERS: String(gateways),
        SYNCHAT_HTTP_PORT: String(httpPort),
        SYNCHAT_TCP_PORT: String(tcpPort),
        SYNCHAT_DATA_DIR: dataDir,
        SYNCHAT_LOG_LEVEL: 'warn',
        SYNCHAT_RATE_LIMIT: 'off',
        // Up to ~17,000 connections a gateway from a few loopback addresses: the file limit bounds them, not the caps.
        SYNCHAT_MAX_CONNS_PER_IP: '1000000',
        SYNCHAT_MAX_CONNS: '1000000',
        SYNCHAT_PASSWORD_LOG2N: '10',
        SYNCHAT_SQLITE_SYNCHRONOUS: 'NORMAL',
        // Idle means idle: no heartbeats needed during the run (idle close after 2.5 × this).
        SYNCHAT_HEARTBEAT_MS: '600000',
        SYNCHAT_HEARTBEAT_MAX_MS: '600000',
      },
      stdio: ['ignore', 'inherit', 'pipe'],
    });
    server.stderr!.on('data', (d: Buffer) => {
      const text = d.toString('utf8').split('\n').filter((l) => l && !/Debugger listening|For help, see|Debugger attached/.test(l));
      if (text.length) process.stderr.write(text.join('\n') + '\n');
    });
    const url = `http://127.0.0.1:${httpPort}`;
    for (let i = 0; ; i++) {
      if (server.exitCode !== null) throw new Error(`server exited with ${server.exitCode}`);
      try {
        if ((await fetch(url + '/api/gateways')).ok) break;
      } catch {
        // not up yet
      }
      if (i > 600) throw new Error('server did not start within 60 s');
      await sleep(100);
    }
    for (let k = 1; k <= gateways; k++) inspectors.push(await Inspector.open(inspectBase + k));
    const primary = await Inspector.open(inspectBase);
    inspectors.push(primary);

    const isSlow = o['slow-readers'] === 'true';
    let chatter = '';
    if (isSlow) {
      await call(url, '/api/register', { username: 'cm_chatter', password: 'bench-password', displayName: 'chatter' });
      chatter = (await call(url, '/api/login', { username: 'cm_chatter', password: 'bench-password', deviceId: 'bench' })).sid;
    }
    const sids: string[] = [];
    for (let u = 0; u < users; u++) {
      const username = `cm_${u}`;
      await call(url, '/api/register', { username, password: 'bench-password', displayName: username });
      const r = await call(url, '/api/login', { username, password: 'bench-password', deviceId: 'bench' });
      if (r.ret !== 0) throw new Error(`login failed: ${JSON.stringify(r)}`);
      sids.push(r.sid);
      if (isSlow) {
        await call(url, '/api/contacts/request', { username }, chatter);
        await call(url, '/api/contacts/accept', { username: 'cm_chatter' }, r.sid);
      }
    }

    // Slow readers AUTH with their device's key (the head), so the server pushes to them instead of notifying once.
    const keys = isSlow ? await Promise.all(sids.map(async (sid) => (await call(url, '/api/synccheck?syncKey=0&timeout=0', undefined, sid, 'GET')).syncKey as number)) : undefined;
    await sleep(2000);
    const gw = inspectors.slice(0, gateways);
    const before = await sampleGateways(gw);
    const primaryBefore = await primary.memory();
    const slab0 = slabBytes();
    const sock0 = sockstatTcpBytes();

    const per = Math.ceil(conns / clients);
    const reports = await Promise.all(
      Array.from({ length: clients }, (_, c) => {
        const job: ClientJob = {
          transport,
          host: '127.0.0.1',
          tcpPort,
          httpPort,
          sids,
          keys,
          count: Math.min(per, conns - c * per),
          sources,
          concurrency: 256,
          offset: c * per,
          isSlowReader: isSlow,
        };
        const child = fork('bench/conn-memory/client.ts', [JSON.stringify(job)], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
        children.push(child);
        return new Promise<ClientReport>((resolve, reject) => {
          child.on('message', (m: ClientReport) => m.t === 'ready' && resolve(m));
          child.once('exit', (code) => reject(new Error(`client ${c} exited with ${code}`)));
        });
      }),
    );
    const ok = reports.reduce((s, r) => s + r.ok, 0);
    const failed = reports.reduce((s, r) => s + r.failed, 0);
    const connectMs = Math.max(...reports.map((r) => r.elapsedMs));

    const chat: Record<string, number>[] = [];
    if (isSlow) {
      const content = 'x'.repeat(15 * 1024);
      const rounds = Number(o.rounds);
      const sampleChat = async (round: number) => {
        const s = await sampleGateways(gw);
        const sum = (f: keyof InspectedMemory) => s.reduce((t, g) => t + (g.mem[f] as number), 0);
        chat.push({
          round,
          sentMiBPerConn: +((round * 15) / 1024).toFixed(2),
          gatewaysRssMiB: mib(sum('rss')),
          gatewaysHeapMiB: mib(sum('heapUsed')),
          gatewaysBuffersMiB: mib(sum('arrayBuffers')),
          kernelTcpBuffersMiB: mib(sockstatTcpBytes()),
        });
        console.log(JSON.stringify(chat.at(-1)));
      };
      await sampleChat(0);
      for (let round = 1; round <= rounds; round++) {
        for (let u = 0; u < users; u += 50) {
          await Promise.all(
            Array.from({ length: Math.min(50, users - u) }, (_, j) =>
              call(url, '/api/sendmsg', { clientMsgId: `r${round}u${u + j}`, to: `cm_${u + j}`, type: 1, content }, chatter),
            ),
          );
        }
        if (round % Math.max(1, Math.round(rounds / 8)) === 0 || round === rounds) {
          await sleep(1000);
          await sampleChat(round);
        }
      }
    }

    await sleep(Number(o.hold) * 1000);
    const after = await sampleGateways(gw);
    const primaryAfter = await primary.memory();
    const slab1 = slabBytes();
    const sock1 = sockstatTcpBytes();

    const rows = before.map((b, k) => {
      const a = after[k]!;
      const n = a.fds - b.fds;
      const d = (f: keyof InspectedMemory) => (a.mem[f] as number) - (b.mem[f] as number);
      return {
        gateway: k + 1,
        pid: a.mem.pid,
        connections: n,
        rssBeforeMiB: mib(b.mem.rss),
        rssAfterMiB: mib(a.mem.rss),
        rssKiBPerConn: kib(d('rss') / n),
        heapKiBPerConn: kib(d('heapUsed') / n),
        externalKiBPerConn: kib(d('external') / n),
      };
    });
    const total = (f: keyof InspectedMemory) => after.reduce((s, a, k) => s + (a.mem[f] as number) - (before[k]!.mem[f] as number), 0);
    const held = after.reduce((s, a, k) => s + a.fds - before[k]!.fds, 0);
    const result = {
      scenario: 'conn-memory',
      date: new Date().toISOString(),
      transport,
      connections: ok,
      failed,
      firstError: reports.find((r) => r.firstError)?.firstError ?? '',
      heldByGateways: held,
      gateways,
      clientProcesses: clients,
      sourceAddresses: sources.length,
      users,
      connectSeconds: +(connectMs / 1000).toFixed(1),
      processRssKiBPerConn: kib(total('rss') / held),
      processHeapKiBPerConn: kib(total('heapUsed') / held),
      processExternalKiBPerConn: kib(total('external') / held),
      corePrimaryRssDeltaMiB: mib(primaryAfter.rss - primaryBefore.rss),
      // Both ends of every connection live in this kernel (loopback): the slab growth is shared by 2 sockets each.
      kernelSlabBytesPerSocket: slab0 !== undefined && slab1 !== undefined ? Math.round((slab1 - slab0) / (2 * ok)) : null,
      kernelTcpBufferBytesPerSocket: Math.round((sock1 - sock0) / (2 * ok)),
      perGateway: rows,
      ...(isSlow ? { slowReaderChat: chat } : {}),
    };
    console.table(rows);
    const { perGateway: _rows, ...summary } = result;
    console.log(JSON.stringify(summary, null, 2));
    if (o.json) writeFileSync(o.json, JSON.stringify(result, null, 2) + '\n');
  } finally {
    for (const i of inspectors) i.close();
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.send('exit');
            setTimeout(() => c.kill('SIGKILL'), 10_000).unref();
          }),
      ),
    );
    if (server && server.exitCode === null) {
      const exited = new Promise((r) => server!.once('exit', r));
      server.kill('SIGTERM');
      const t = setTimeout(() => server!.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dataDir, { recursive: true, force: true });
    clearTimeout(watchdog);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  run(process.argv.slice(2)).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
