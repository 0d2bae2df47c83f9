/**
 * Voice notes as MP3, for clients that play nothing else (WeChat-web's `webwxgetvoice`, docs/webwx.md "Voice").
 * Synchat keeps voice as the browser recorded it; Chromium and Firefox record Opus in WebM or Ogg, which a worker
 * thread (voice-mp3-worker.mjs) decodes with libav.js (FFmpeg's demuxers and libopus compiled to WebAssembly, no
 * native code) and encodes to MP3 with lamejs (JavaScript): mono, 48 kbit/s, a voice note, not music. The work is
 * off the event loop: measured 2026-12-03 on this project's 2-core machine under a load average of 12 (other test
 * runs), a 60 s note took 4.1-7.4 s and a 2 s note 0.7-1.5 s (after the worker's first job, 3-4 s with its start),
 * while the calling thread's timers lagged at most 124 ms.
 */
import { Worker } from 'node:worker_threads';

/** Stored voice formats {@link voiceToMp3} reads (MP3 itself needs nothing). */
export const TRANSCODED_VOICE_MIMES: readonly string[] = ['audio/webm', 'audio/ogg'];

/**
 * Largest voice file transcoded, in bytes (the whole file is handed to the worker): Opus at 32 kbit/s is 14 MB an
 * hour, so 8 MiB is over half an hour of speech, far past a voice note.
 */
export const MAX_TRANSCODE_BYTES = 8 * 1024 * 1024;

/** Why a voice note cannot be made MP3 (the caller answers it as an honest refusal). */
export class VoiceTranscodeError extends Error {}

type Pending = { resolve: (mp3: Uint8Array) => void; reject: (err: Error) => void };

/** The process's one worker, started at the first transcode; unreferenced while idle, so it never holds the process. */
let worker: Worker | undefined;
const pending = new Map<number, Pending>();
let nextId = 0;

function failAll(err: Error): void {
  for (const p of pending.values()) p.reject(err);
  pending.clear();
  worker = undefined;
}

function theWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(new URL('./voice-mp3-worker.mjs', import.meta.url));
  w.on('message', (m: { id: number; mp3?: Uint8Array; error?: string; isRefusal?: boolean }) => {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (pending.size === 0) w.unref();
    if (!p) return;
    if (m.mp3) p.resolve(m.mp3);
    else p.reject(m.isRefusal ? new VoiceTranscodeError(m.error) : new Error(`voice transcoding failed: ${m.error}`));
  });
  // A worker that dies fails what it held; the next transcode starts another.
  w.on('error', (err) => failAll(err));
  w.on('exit', () => {
    if (worker === w) failAll(new Error('the voice transcoding worker exited'));
  });
  w.unref();
  return (worker = w);
}

/**
 * The MP3 of a voice note stored as Opus in WebM or Ogg ({@link TRANSCODED_VOICE_MIMES}). Rejects with
 * {@link VoiceTranscodeError} for input it cannot read (no audio stream, an unexpected sample rate, too large).
 * Notes are transcoded one at a time per process, in call order.
 */
export function voiceToMp3(bytes: Uint8Array): Promise<Uint8Array> {
  if (bytes.length > MAX_TRANSCODE_BYTES) return Promise.reject(new VoiceTranscodeError(`voice note over ${MAX_TRANSCODE_BYTES} bytes`));
  const w = theWorker();
  const id = ++nextId;
  return new Promise<Uint8Array>((resolve, reject) => {
    pending.set(id, { resolve, reject });
    w.ref();
    w.postMessage({ id, bytes });
  });
}
