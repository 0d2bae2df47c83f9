/**
 * Test helper: a PostgreSQL server of the caller's own (initdb in a temp folder, its own port and socket folder),
 * so a test or the chaos runner may crash and restart it without touching the machine's shared server, which
 * other work uses. PostgreSQL refuses to run as root, so when we are root every command runs as the `postgres`
 * OS user (`runuser -u postgres --`), which then owns the folder.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './process.ts';

/** Where Debian/Ubuntu put the server's programs. */
const PG_BIN = process.env.SYNCHAT_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** A private PostgreSQL server. */
export interface PrivatePostgres {
  /** URL of its `synchat` database (trust auth, user postgres). */
  url: string;
  port: number;
  /** Stops it the way a crash does (`pg_ctl stop -m immediate`: no checkpoint, recovery at the next start). */
  crash(): Promise<void>;
  /** Starts it again on the same port and folder; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops it (fast) and removes its folder. */
  stop(): Promise<void>;
}

/** Whether a private PostgreSQL can be started here (the programs exist); else the reason to skip. */
export function privatePostgresMissing(): string | undefined {
  return existsSync(join(PG_BIN, 'initdb')) ? undefined : `PostgreSQL programs not found in ${PG_BIN} (set SYNCHAT_TEST_PG_BIN)`;
}

function pgCommand(program: string, args: string[]): void {
  const isRoot = process.getuid?.() === 0;
  const [cmd, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', join(PG_BIN, program), ...args]] : [join(PG_BIN, program), args];
  execFileSync(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
}

/** initdb + start on a free port, then creates the `synchat` database. */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-pg-'));
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  const port = await freePort();
  pgCommand('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`;
  const start = async () => pgCommand('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', '-t', '60', 'start']);
  await start();
  pgCommand('createdb', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'synchat']);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/synchat`,
    port,
    async crash() {
      pgCommand('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    },
    start,
    async stop() {
      try {
        pgCommand('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
      } catch {
        // already stopped
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
