/** Test media: a voice note as browsers record it (Opus in WebM), made with libav.js, the same library the server decodes with. */
import LibAVFactory from '@libav.js/variant-opus-af';

/** `seconds` of a 440 Hz tone, mono 48 kHz Opus in a WebM file. */
export async function opusWebm(seconds: number): Promise<Buffer> {
  const lib = await LibAVFactory.LibAV({ noworker: true });
  const rate = 48000;
  const [, c, frame, pkt, frameSize] = await lib.ff_init_encoder('libopus', {
    ctx: { bit_rate: 32000, sample_fmt: lib.AV_SAMPLE_FMT_FLT, sample_rate: rate, channel_layout: 4 },
    time_base: [1, rate],
  });
  const [oc, , pb] = await lib.ff_init_muxer({ filename: 'out.webm', format_name: 'webm', open: true }, [[c, 1, rate]]);
  await lib.avformat_write_header(oc, 0);
  const frames = [];
  for (let at = 0; at < rate * seconds; at += frameSize) {
    const data = new Float32Array(frameSize);
    for (let i = 0; i < frameSize; i++) data[i] = 0.3 * Math.sin((2 * Math.PI * 440 * (at + i)) / rate);
    frames.push({ data, channel_layout: 4, format: lib.AV_SAMPLE_FMT_FLT, pts: at, sample_rate: rate });
  }
  await lib.ff_write_multi(oc, pkt, await lib.ff_encode_multi(c, frame, pkt, frames, true));
  await lib.av_write_trailer(oc);
  await lib.ff_free_muxer(oc, pb);
  await lib.ff_free_encoder(c, frame, pkt);
  const bytes = Buffer.from(await lib.readFile('out.webm'));
  lib.terminate();
  return bytes;
}
