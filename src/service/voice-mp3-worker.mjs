// The worker thread of voice-mp3.ts: Opus in WebM or Ogg → MP3, off the event loop of the process that serves
// requests (a minute of voice takes seconds of CPU here). Messages: {id, bytes} in, {id, mp3} or {id, error,
// isRefusal} out. Plain JavaScript so that it runs as a worker whatever loader the parent uses (tsx or none).
import { parentPort } from 'node:worker_threads';
import LibAVFactory from '@libav.js/variant-opus-af';
import { Mp3Encoder } from '@breezystack/lamejs';

/** MP3 bit rate, kbit/s (speech). */
const MP3_KBPS = 48;
/** Sample rates an MP3 may have (MPEG-1, -2 and 2.5); Opus decodes at 48 kHz. */
const MP3_RATES = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];
/** Compressed bytes read per step: decoded and encoded at once, so a whole note's samples are never held. */
const READ_PAGE_BYTES = 64 * 1024;

class Refusal extends Error {}

const lib = await LibAVFactory.LibAV({ noworker: true });
let jobs = 0;

/** 16-bit mono samples of a decoded frame (interleaved or planar, float or 16-bit), channels averaged. */
function monoS16(frame) {
  const isPacked = !Array.isArray(frame.data);
  const planes = isPacked ? [frame.data] : frame.data;
  const channels = isPacked ? Math.max(1, frame.channels ?? 1) : planes.length;
  const isFloat = frame.format === lib.AV_SAMPLE_FMT_FLT || frame.format === lib.AV_SAMPLE_FMT_FLTP;
  const isS16 = frame.format === lib.AV_SAMPLE_FMT_S16 || frame.format === lib.AV_SAMPLE_FMT_S16P;
  if (!isFloat && !isS16) throw new Refusal(`decoded sample format ${frame.format} is not float or 16-bit`);
  const n = isPacked ? planes[0].length / channels : planes[0].length;
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let ch = 0; ch < channels; ch++) sum += isPacked ? planes[0][i * channels + ch] : planes[ch][i];
    const v = sum / channels;
    out[i] = isFloat ? Math.max(-32768, Math.min(32767, Math.round(v * 32767))) : v;
  }
  return out;
}

async function toMp3(bytes) {
  const name = `voice-${++jobs}.in`;
  await lib.writeFile(name, bytes);
  let fmt = 0;
  try {
    const [fmtCtx, streams] = await lib.ff_init_demuxer_file(name).catch(() => {
      throw new Refusal('not a readable WebM or Ogg file');
    });
    fmt = fmtCtx;
    const st = streams.find((s) => s.codec_type === lib.AVMEDIA_TYPE_AUDIO);
    if (!st) throw new Refusal('no audio stream');
    const [, codec, pkt, frame] = await lib.ff_init_decoder(st.codec_id, { codecpar: st.codecpar });
    try {
      let encoder;
      const parts = [];
      for (;;) {
        const [res, packets] = await lib.ff_read_frame_multi(fmtCtx, pkt, { limit: READ_PAGE_BYTES });
        const isEnd = res === lib.AVERROR_EOF;
        if (res !== 0 && res !== -lib.EAGAIN && !isEnd) throw new Refusal(`the file cannot be read (${res})`);
        for (const f of await lib.ff_decode_multi(codec, pkt, frame, packets[st.index] ?? [], isEnd)) {
          if (!encoder) {
            const rate = f.sample_rate ?? 48000;
            if (!MP3_RATES.includes(rate)) throw new Refusal(`sample rate ${rate} Hz`);
            encoder = new Mp3Encoder(1, rate, MP3_KBPS);
          }
          parts.push(encoder.encodeBuffer(monoS16(f)));
        }
        if (isEnd) break;
      }
      if (!encoder) throw new Refusal('no audio in the file');
      parts.push(encoder.flush());
      // lamejs answers Int8Arrays; one fresh buffer of its own, so it can be transferred to the parent.
      const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        out.set(new Uint8Array(p.buffer, p.byteOffset, p.length), at);
        at += p.length;
      }
      return out;
    } finally {
      await lib.ff_free_decoder(codec, pkt, frame);
    }
  } finally {
    if (fmt) await lib.avformat_close_input_js(fmt);
    await lib.unlink(name);
  }
}

// One job at a time: the library's virtual files and decoder state are this thread's.
let queue = Promise.resolve();
parentPort.on('message', ({ id, bytes }) => {
  queue = queue.then(async () => {
    try {
      const mp3 = await toMp3(bytes);
      parentPort.postMessage({ id, mp3 }, [mp3.buffer]);
    } catch (err) {
      parentPort.postMessage({ id, error: String(err?.message ?? err), isRefusal: err instanceof Refusal });
    }
  });
});
