/**
 * Media upload throughput: a `--mib` MiB file (default 50) of fresh random bytes uploaded with the SDK's
 * MediaClient (`init` → chunk PUTs → `complete`) with 1, 4 and 8 chunks in flight, against a fresh server
 * process per worker setting (synchronous=FULL, media on the local disk of a temp folder). Each setting runs
 * `--repeat` times with new content (no de-duplication, no resume); the median is reported. Times: `chunks` is
 * from init's answer to the last chunk's answer, `complete` is the server's verification (SHA-256 over the
 * chunks) and assembly; the client's own SHA-256 of the file is excluded and shown apart.
 *
 *   npx tsx bench/scenarios/media-upload.ts [--mib 50] [--chunk-kib 1024] [--concurrency 1,4,8] [--workers 0,2] [--repeat 3] [--json FILE]
 */
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { pathToFileURL } from 'node:url';
import { MediaClient } from '../../src/sdk/media.ts';
import { call, parseArgs, spawnServer } from '../lib/proc.ts';

interface Row {
  workers: number;
  concurrency: number;
  mib: number;
  chunkKiB: number;
  /** Median over repeats. */
  totalMs: number;
  chunksMs: number;
  completeMs: number;
  /** File MiB / (chunks + complete) seconds. */
  mibPerSec: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function measure(workers: number, concurrencies: number[], o: Record<string, string>): Promise<Row[]> {
  const server = await spawnServer({ SYNCHAT_WORKERS: String(workers) });
  try {
    const mib = Number(o.mib);
    const chunkKiB = Number(o['chunk-kib']);
    const rows: Row[] = [];
    let n = 0;
    for (const concurrency of concurrencies) {
      const samples: { total: number; chunks: number; complete: number }[] = [];
      for (let r = 0; r < Number(o.repeat); r++) {
        // A fresh user per run keeps the daily limit out of the way; fresh bytes keep de-duplication out.
        const username = `media_bench_${workers}_${n++}`;
        await call(server.url, '/api/register', { username, password: 'bench-password', displayName: username });
        const login = await call(server.url, '/api/login', { username, password: 'bench-password', deviceId: 'bench' });
        const bytes = randomBytes(mib * 1024 * 1024);
        let tInit = 0;
        let tChunks = 0;
        const client = new MediaClient({
          baseUrl: server.url,
          sid: login.sid,
          chunkSize: chunkKiB * 1024,
          concurrency,
          sendmsg: async () => {
            throw new Error('not used');
          },
        });
        const t0 = performance.now();
        const result = await client.upload(bytes, {
          mime: 'application/octet-stream',
          onProgress: (p) => {
            const now = performance.now();
            if (p.chunksDone === 0) tInit = now;
            if (p.chunksDone === p.chunksTotal) tChunks = now;
          },
        });
        const t1 = performance.now();
        if (!result.mediaId || result.isInstant) throw new Error('upload did not go through');
        samples.push({ total: t1 - t0, chunks: tChunks - tInit, complete: t1 - tChunks });
      }
      const chunksMs = median(samples.map((s) => s.chunks));
      const completeMs = median(samples.map((s) => s.complete));
      const row: Row = {
        workers,
        concurrency,
        mib,
        chunkKiB,
        totalMs: Math.round(median(samples.map((s) => s.total))),
        chunksMs: Math.round(chunksMs),
        completeMs: Math.round(completeMs),
        mibPerSec: Math.round((mib / ((chunksMs + completeMs) / 1000)) * 10) / 10,
      };
      console.log(JSON.stringify(row));
      rows.push(row);
    }
    return rows;
  } finally {
    await server.stop();
  }
}

/** Runs the scenario (also the `npm run bench -- media-upload` entry). */
export async function run(argv: string[]): Promise<void> {
  const o = parseArgs(argv, { mib: '50', 'chunk-kib': '1024', concurrency: '1,4,8', workers: '0,2', repeat: '3', json: '' });
  const concurrencies = o.concurrency!.split(',').map(Number);
  const hashStart = performance.now();
  createHash('sha256').update(randomBytes(Number(o.mib) * 1024 * 1024)).digest();
  const hashMs = Math.round(performance.now() - hashStart);
  console.log(`client: random bytes + SHA-256 of ${o.mib} MiB take ${hashMs} ms (not counted below); ${cpus().length} cores`);
  const rows: Row[] = [];
  for (const w of o.workers!.split(',').map(Number)) rows.push(...(await measure(w, concurrencies, o)));
  console.log('\n| workers | chunks in flight | chunks ms | complete ms | total ms | MiB/s |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.workers} | ${r.concurrency} | ${r.chunksMs} | ${r.completeMs} | ${r.totalMs} | ${r.mibPerSec} |`);
  if (o.json) writeFileSync(o.json, JSON.stringify({ scenario: 'media-upload', date: new Date().toISOString(), rows }, null, 2));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  run(process.argv.slice(2)).then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
