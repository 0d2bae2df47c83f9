/**
 * One message: text (links and emoji, rendered as text nodes only), image, voice note or file; its send state
 * (spinner, ✓ sent, ✓✓ read, red ! that resends on click); recall within two minutes; system notes.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { MSG_TYPE } from '../../../src/sdk/index.ts';
import { formatBytes, formatDuration, isEmojiOnly, linkify, timeOfDay } from '../format.ts';
import type { ViewMessage } from '../types.ts';
import { Avatar, Icon, useModel } from './common.tsx';

/** Text with safe links. */
export function RichText(props: { text: string }) {
  return (
    <>
      {linkify(props.text).map((t, i) =>
        'href' in t ? (
          <a key={i} href={t.href} target="_blank" rel="noopener noreferrer nofollow">
            {t.text}
          </a>
        ) : (
          t.text
        ),
      )}
    </>
  );
}

function useMediaUrl(mediaId: string | undefined, variant: 'thumb' | 'original', localUrl?: string): { url?: string; failed: boolean } {
  const model = useModel();
  const [url, setUrl] = useState<string | undefined>(localUrl);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    if (localUrl || !mediaId) return;
    let isLive = true;
    model.mediaUrl(mediaId, variant).then(
      (u) => isLive && setUrl(u),
      () => isLive && setFailed(true),
    );
    return () => {
      isLive = false;
    };
  }, [mediaId, variant, localUrl]);
  return { url, failed };
}

function ImageContent(props: { m: ViewMessage; onOpenImage: (mediaId: string | undefined, localUrl?: string) => void }) {
  const { m } = props;
  const { url, failed } = useMediaUrl(m.mediaId, 'thumb', m.localUrl);
  return (
    <button type="button" class="image-button" aria-label="Open image" onClick={() => props.onOpenImage(m.mediaId, m.localUrl)}>
      {url ? <img src={url} alt={m.content || 'Image'} class="image-thumb" data-testid="message-image" loading="lazy" /> : <span class="image-placeholder">{failed ? 'Image unavailable' : ''}</span>}
      {m.status === 'sending' && m.progress !== undefined && m.progress < 1 && (
        <span class="upload-overlay">
          <span class="progress-ring" style={{ '--p': `${Math.round(m.progress * 100)}` }} role="progressbar" aria-valuenow={Math.round(m.progress * 100)} aria-valuemin={0} aria-valuemax={100} aria-label="Uploading" />
        </span>
      )}
    </button>
  );
}

function VoiceContent(props: { m: ViewMessage }) {
  const { m } = props;
  const model = useModel();
  const durationMs = Number(m.content) || 0;
  const [isPlaying, setPlaying] = useState(false);
  const [position, setPosition] = useState(0);
  const audio = useRef<HTMLAudioElement | null>(null);
  useEffect(() => () => audio.current?.pause(), []);

  async function toggle() {
    if (isPlaying) {
      audio.current?.pause();
      return;
    }
    if (!audio.current) {
      if (!m.mediaId) return;
      const url = await model.mediaUrl(m.mediaId, 'original');
      const a = new Audio(url);
      a.ontimeupdate = () => setPosition(a.currentTime * 1000);
      a.onpause = () => setPlaying(false);
      a.onplay = () => setPlaying(true);
      a.onended = () => (setPlaying(false), setPosition(0));
      audio.current = a;
    }
    void audio.current.play();
  }
  const bars = 24;
  const progress = durationMs ? Math.min(1, position / durationMs) : 0;
  return (
    <div class="voice" data-testid="message-voice">
      <button type="button" class="voice-play" aria-label={isPlaying ? 'Pause voice message' : 'Play voice message'} onClick={() => void toggle()} disabled={!m.mediaId}>
        <Icon name={isPlaying ? 'pause' : 'play'} size={22} />
      </button>
      <span class="voice-wave" aria-hidden="true">
        {Array.from({ length: bars }, (_, i) => (
          <i key={i} class={i / bars < progress ? 'on' : ''} style={{ height: `${30 + 70 * Math.abs(Math.sin((i + 1) * 1.7 + (m.clientMsgId.charCodeAt(0) || 0)))}%` }} />
        ))}
      </span>
      <span class="voice-duration">{formatDuration(isPlaying || position ? position : durationMs)}</span>
    </div>
  );
}

function FileContent(props: { m: ViewMessage }) {
  const { m } = props;
  const model = useModel();
  const [isBusy, setBusy] = useState(false);
  async function download() {
    if (!m.mediaId) return;
    setBusy(true);
    try {
      const url = await model.mediaUrl(m.mediaId, 'original');
      const a = document.createElement('a');
      a.href = url;
      a.download = m.content || 'file';
      document.body.append(a);
      a.click();
      a.remove();
    } finally {
      setBusy(false);
    }
  }
  const uploading = m.status === 'sending' && m.progress !== undefined && m.progress < 1;
  const [size, setSize] = useState<number | undefined>(m.fileSize);
  useEffect(() => {
    if (size !== undefined || !m.mediaId) return;
    let isLive = true;
    model.mediaInfo(m.mediaId).then(
      (info) => isLive && typeof info.size === 'number' && setSize(info.size),
      () => {},
    );
    return () => {
      isLive = false;
    };
  }, [m.mediaId]);
  return (
    <div class="file-card" data-testid="message-file">
      <span class="file-icon">
        <Icon name="file" size={26} />
      </span>
      <span class="file-main">
        <span class="file-name">{m.content || m.fileName || 'File'}</span>
        <span class="file-meta">
          {uploading ? `Uploading… ${Math.round((m.progress ?? 0) * 100)}%` : size !== undefined ? formatBytes(size) : 'File'}
        </span>
        {uploading && (
          <span class="bar">
            <i style={{ width: `${Math.round((m.progress ?? 0) * 100)}%` }} />
          </span>
        )}
      </span>
      {m.mediaId && (
        <button type="button" class="icon-button" aria-label={`Download ${m.content}`} onClick={() => void download()} disabled={isBusy}>
          {isBusy ? <span class="spinner" /> : <Icon name="download" />}
        </button>
      )}
    </div>
  );
}

/** The send state of one of my messages. */
function StatusMark(props: { m: ViewMessage }) {
  const model = useModel();
  const { m } = props;
  switch (m.status) {
    case 'sending':
      return <span class="status sending" aria-label="Sending" title="Sending" />;
    case 'sent':
      return (
        <span class="status sent" aria-label="Sent" title="Sent">
          <Icon name="check" size={15} />
        </span>
      );
    case 'read':
      return (
        <span class="status read" aria-label="Read" title="Read">
          <Icon name="checks" size={15} />
        </span>
      );
    case 'failed':
      return (
        <button
          type="button"
          class="status failed"
          data-testid="message-resend"
          aria-label="Not sent. Send again"
          title={`Not sent${m.error ? `: ${m.error}` : ''}. Click to send again`}
          onClick={() => void model.resend(m.clientMsgId)}
        >
          !
        </button>
      );
    default:
      return null;
  }
}

/** One message row. */
export function MessageItem(props: { m: ViewMessage; isGroup: boolean; isFirstOfRun: boolean; onOpenImage: (mediaId: string | undefined, localUrl?: string) => void; now: number }) {
  const model = useModel();
  const { m } = props;
  const isMine = m.from === model.me;
  const common = {
    'data-testid': 'message',
    'data-from': m.from,
    'data-client-msg-id': m.clientMsgId,
    ...(m.msgId ? { 'data-msgid': m.msgId } : {}),
    ...(isMine && m.status ? { 'data-status': m.status } : {}),
  };
  if (m.type === MSG_TYPE.SYSTEM) {
    return (
      <div class="system-note" {...common}>
        <RichText text={m.content} />
      </div>
    );
  }
  if (m.recalled) {
    return (
      <div class="system-note recalled" {...common} data-recalled="true">
        {isMine ? 'You recalled a message' : `${model.nameOf(m.from)} recalled a message`}
      </div>
    );
  }
  const isBig = m.type === MSG_TYPE.TEXT && isEmojiOnly(m.content);
  const kindClass = m.type === MSG_TYPE.IMAGE ? 'kind-image' : m.type === MSG_TYPE.VOICE ? 'kind-voice' : m.type === MSG_TYPE.FILE ? 'kind-file' : isBig ? 'kind-emoji' : 'kind-text';
  return (
    <div class={`message-row ${isMine ? 'mine' : 'theirs'}${props.isFirstOfRun ? ' first' : ''}`} {...common}>
      {!isMine && props.isGroup && (props.isFirstOfRun ? <Avatar id={m.from} name={model.nameOf(m.from)} size={30} /> : <span class="avatar-spacer" />)}
      <div class={`bubble ${kindClass}${m.type === MSG_TYPE.IMAGE && m.content ? ' has-caption' : ''}`} tabIndex={0}>
        {!isMine && props.isGroup && props.isFirstOfRun && <div class="sender">{model.nameOf(m.from)}</div>}
        {m.type === MSG_TYPE.IMAGE ? (
          <>
            <ImageContent m={m} onOpenImage={props.onOpenImage} />
            {m.content && (
              <div class="caption">
                <RichText text={m.content} />
              </div>
            )}
          </>
        ) : m.type === MSG_TYPE.VOICE ? (
          <VoiceContent m={m} />
        ) : m.type === MSG_TYPE.FILE ? (
          <FileContent m={m} />
        ) : (
          <div class="text">
            <RichText text={m.content} />
          </div>
        )}
        <span class="meta">
          <time dateTime={new Date(m.createTime).toISOString()}>{timeOfDay(m.createTime)}</time>
          {isMine && <StatusMark m={m} />}
        </span>
      </div>
      {model.canRecall(m, props.now) && (
        <button type="button" class="message-action" data-testid="message-recall" aria-label="Recall message" title="Recall (within 2 minutes)" onClick={() => void model.recall(m.msgId!).catch(() => {})}>
          <Icon name="recall" size={16} />
        </button>
      )}
    </div>
  );
}
