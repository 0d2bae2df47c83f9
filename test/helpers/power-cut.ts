/**
 * A power cut, simulated: only bytes that were fsynced survive it.
 *
 * kill -9 leaves the kernel's page cache intact, so a crash test passes even when nothing is ever synced. Here the
 * server (test/helpers/power-cut-server.ts, a child process) syncs its WAL through the store's `fsyncModule` seam
 * with the `shadow` disk of test/helpers/gated-fsync.cjs: each fsync first copies the file as it is when the fsync
 * is called. After a kill -9 at a random moment of a burst of sends, the data folder is rebuilt from what a disk
 * would hold after losing power then: the folder as it was before the run (written by a cleanly stopped server,
 * so synced) plus the last synced copy of each file; the live files, page cache included, are thrown away. A
 * normal server then starts on the rebuilt folder (SQLite recovers the WAL), and every send answered ret 0 must be
 * in the sender's and the recipient's log exactly once, and `PRAGMA integrity_check` must be ok.
 *
 * What is simulated: the WAL and the database file losing every byte not written before their last sync began (a
 * write racing a sync may be copied torn, as a disk may hold it; SQLite must recover from that). The WAL is
 * synced through the seam; the database file only by checkpoints, whose syncs SQLite makes inside the C library,
 * out of the seam's sight, so the power-cut server runs the checkpoints itself, as the store's helper thread
 * does, copying at the moments SQLite syncs (power-cut-server.ts), every 50 ms, so that cuts also fall after WAL
 * restarts. With `SYNCHAT_SQLITE_SYNCHRONOUS=OFF` nothing syncs, so the disk keeps nothing newer than the start:
 * the worst that losing power may do to writes never synced.
 * What is not: the -shm index (rebuilt by SQLite from the WAL on open), directory entries (the files exist before
 * the run), a disk that reorders or tears writes it acknowledged as synced, and the store's own checkpoint thread
 * (off in that server; its checkpoints are the same PASSIVE pragma on its own connection).
 */
import { spawn } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { fsyncModuleIn } from './gated-fsync.ts';
import { freePort, spawnServerProcess } from './process.ts';
import { api, befriend, startBurst, userDevice } from './server.ts';

/** The outcome of one simulated power cut. */
export interface PowerCut {
  synchronous: 'FULL' | 'NORMAL' | 'OFF';
  /** ms from the first answered send to the kill -9. */
  cutAfterMs: number;
  attempted: number;
  answered: number;
  /** Answered sends missing from the sender's or the recipient's log (`who:clientMsgId`). */
  lost: string[];
  /** clientMsgIds more than once in a log (`who:clientMsgId`). */
  doubled: string[];
  /** `PRAGMA integrity_check` of the rebuilt database. */
  integrity: string;
  /** Messages stored after a kill -9 alone (the live folder, page cache included) and after the power cut. */
  messages: { afterKill9: number; afterPowerCut: number };
  /** Simulated checkpoints before the cut, and the WAL restarts among them (FULL only). */
  checkpoints: { checkpoints: number; walRestarts: number };
}

/** Files in the shadow folder that are not copies of synced files. */
const NOT_ON_DISK = new Set(['fsync.cjs', 'checkpoints.json', 'lock']);

/** Messages in the database of `dir` (opening it recovers its WAL). */
function countMessages(dir: string): number {
  const db = new Database(join(dir, 'synchat.db'));
  try {
    return (db.prepare('SELECT COUNT(*) AS n FROM messages').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** A data folder as a cleanly stopped server leaves it: the state on disk before every run. */
export async function cleanDataFolder(): Promise<{ dir: string; remove(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-powercut-base-'));
  const server = await spawnServerProcess({ SYNCHAT_DATA_DIR: dir, SYNCHAT_WORKERS: '0', SYNCHAT_TCP_PORT: String(await freePort()) });
  await server.stop();
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Starts the power-cut server on `dataDir`; resolves with its URL and a kill -9. */
async function startOnShadowDisk(dataDir: string, shadowDir: string, synchronous: string): Promise<{ url: string; kill9(): Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/power-cut-server.ts', dataDir, fsyncModuleIn(shadowDir, 'shadow')], {
    env: { ...process.env, SYNCHAT_SQLITE_SYNCHRONOUS: synchronous },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    void exited.then(() => reject(new Error(`the power-cut server exited with ${child.exitCode} before it listened`)));
  });
  return {
    url: `http://127.0.0.1:${JSON.parse(first).httpPort}`,
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** A user's log as the server serves it, or undefined when the session is unknown (the login did not survive). */
async function logOf(url: string, sid: string): Promise<any[] | undefined> {
  const entries: any[] = [];
  for (let key = 0; ; ) {
    const r = await api(url, '/api/sync', { syncKey: key, limit: 1000 }, sid);
    if (r.body.ret !== 0) return undefined;
    entries.push(...r.body.entries);
    key = r.body.syncKey;
    if (!r.body.continueFlag) return entries;
  }
}

/**
 * One run: a burst of sends from alice to bob over HTTP (16 at a time), cut `cutAfterMs` after the first answer,
 * on a copy of `baseDir`.
 */
export async function cutPower(baseDir: string, synchronous: PowerCut['synchronous'], cutAfterMs: number): Promise<PowerCut> {
  const runDir = mkdtempSync(join(tmpdir(), 'synchat-powercut-'));
  try {
    const [live, shadow, disk] = ['live', 'shadow', 'disk'].map((d) => join(runDir, d)) as [string, string, string];
    cpSync(baseDir, live, { recursive: true });
    mkdirSync(shadow);
    const server = await startOnShadowDisk(live, shadow, synchronous);
    const alice = await userDevice(server.url, 'cut_alice');
    const bob = await userDevice(server.url, 'cut_bob');
    await befriend(server.url, alice, bob);
    const burst = startBurst(server.url, alice, 'cut_bob', 16, 'cut ');
    while (burst.answered.size === 0) await new Promise((r) => setTimeout(r, 1));
    await new Promise((r) => setTimeout(r, cutAfterMs));
    await server.kill9();
    await burst.stop();

    // The disk after the power cut: the synced state before the run, then each file's last synced copy.
    cpSync(baseDir, disk, { recursive: true });
    for (const name of readdirSync(shadow)) {
      if (!NOT_ON_DISK.has(name) && !name.endsWith('.tmp')) copyFileSync(join(shadow, name), join(disk, name));
    }
    let checkpoints = { checkpoints: 0, walRestarts: 0 };
    try {
      checkpoints = JSON.parse(readFileSync(join(shadow, 'checkpoints.json'), 'utf8'));
    } catch {
      // none yet, or cut while being written: the counts are for the report only
    }
    const db = new Database(join(disk, 'synchat.db'));
    const integrity = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join('; ');
    db.close();
    const messages = { afterKill9: countMessages(live), afterPowerCut: countMessages(disk) };

    const restarted = await spawnServerProcess({ SYNCHAT_DATA_DIR: disk, SYNCHAT_WORKERS: '0', SYNCHAT_TCP_PORT: String(await freePort()) });
    const lost: string[] = [];
    const doubled: string[] = [];
    try {
      for (const who of [alice, bob]) {
        const log = await logOf(restarted.url, who.sid);
        const ids = (log ?? []).filter((e) => e.kind === 'msg').map((e) => e.clientMsgId as string);
        for (const id of new Set(ids.filter((id, i) => ids.indexOf(id) !== i))) doubled.push(`${who.username}:${id}`);
        for (const id of burst.answered.keys()) if (!ids.includes(id)) lost.push(`${who.username}:${id}`);
      }
    } finally {
      await restarted.stop();
    }
    return { synchronous, cutAfterMs, attempted: burst.attempted.length, answered: burst.answered.size, lost, doubled, integrity, messages, checkpoints };
  } finally {
    rmSync(runDir, { recursive: true, force: true });
  }
}
