/**
 * The open conversation: header, the message list (day separators, infinite scroll back through the cached
 * history, sticks to the bottom while you are there), the composer (Enter sends, Shift+Enter new line, paste or
 * drop images and files, hold the mic to record a voice note) and the full-size image viewer.
 */
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { dayKey, dayLabel, isGroupPeer } from '../format.ts';
import { Avatar, Icon, useModel } from './common.tsx';
import { MessageItem } from './message.tsx';

const EMOJI = ['😀', '😂', '😊', '😍', '🤔', '😎', '😢', '😮', '🙏', '👍', '👏', '🎉', '❤️', '🔥', '✅', '👋', '🙌', '🤝', '☕', '🍕', '🚀', '🌟', '💡', '🎂'];

/**
 * Blocks or unblocks `username` (asking first before a block): while blocked, nothing they do reaches any of my
 * devices, and they are not told (docs/protocol.md "Blocking").
 */
export function BlockButton(props: { username: string; name: string; isText?: boolean }) {
  const model = useModel();
  const isBlocked = model.isBlocked(props.username);
  const label = `${isBlocked ? 'Unblock' : 'Block'} ${props.name}`;
  async function toggle() {
    if (!isBlocked && !confirm(`Block ${props.name}? Nothing they send will reach you, and they will not be told.`)) return;
    await model.setBlock(props.username, !isBlocked).catch(() => {});
  }
  return props.isText ? (
    <button class="ghost small" type="button" aria-label={label} data-testid="block-toggle" data-blocked={String(isBlocked)} onClick={() => void toggle()}>
      {isBlocked ? 'Unblock' : 'Block'}
    </button>
  ) : (
    <button class="icon-button" type="button" aria-label={label} title={label} data-testid="block-toggle" data-blocked={String(isBlocked)} onClick={() => void toggle()}>
      <Icon name="block" />
    </button>
  );
}

/** The chat column for `peer`. */
export function ChatPane(props: { peer: string; onBack: () => void; onGroupInfo: () => void }) {
  const model = useModel();
  const { peer } = props;
  const [viewer, setViewer] = useState<string | undefined>();
  const [isDragging, setDragging] = useState(false);
  const isGroup = isGroupPeer(peer);
  const group = model.state.groups[peer];
  const title = model.titleOf(peer);
  const isContact = isGroup ? !!group : !!model.state.contacts[peer] || peer === model.me;
  const canBlock = !isGroup && peer !== model.me;
  const isBlocked = canBlock && model.isBlocked(peer);

  async function openImage(mediaId: string | undefined, localUrl?: string) {
    if (localUrl) return setViewer(localUrl);
    if (mediaId) setViewer(await model.mediaUrl(mediaId, 'original'));
  }

  function onDrop(e: DragEvent) {
    e.preventDefault();
    setDragging(false);
    for (const f of Array.from(e.dataTransfer?.files ?? [])) void model.sendMedia(peer, f, f.type.startsWith('image/') ? 'image' : 'file');
  }

  return (
    <section
      class={`chat${isDragging ? ' dragging' : ''}`}
      aria-label={`Chat with ${title}`}
      onDragOver={(e) => {
        if (e.dataTransfer?.types.includes('Files')) {
          e.preventDefault();
          setDragging(true);
        }
      }}
      onDragLeave={(e) => {
        if (e.currentTarget === e.target) setDragging(false);
      }}
      onDrop={onDrop}
    >
      <header class="chat-header">
        <button class="icon-button back" type="button" aria-label="Back to chats" onClick={props.onBack}>
          <Icon name="back" />
        </button>
        <Avatar id={peer} name={title} isGroup={isGroup} size={40} />
        <div class="chat-title">
          <h2 data-testid="chat-title">{title}</h2>
          <span class="muted">{isGroup ? `${group?.members.length ?? 0} members` : `@${peer}`}</span>
        </div>
        {isGroup && (
          <button class="icon-button" type="button" aria-label="Group info" title="Group info" onClick={props.onGroupInfo} data-testid="group-info">
            <Icon name="more" />
          </button>
        )}
        {canBlock && <BlockButton username={peer} name={title} />}
      </header>
      <MessageList peer={peer} onOpenImage={(id, local) => void openImage(id, local)} />
      {isBlocked ? (
        <div class="composer-disabled" data-testid="blocked-notice">
          You blocked {title}: nothing they send reaches you. <BlockButton username={peer} name={title} isText />
        </div>
      ) : isContact ? (
        <Composer peer={peer} />
      ) : (
        <div class="composer-disabled">You can no longer send messages here.</div>
      )}
      {isDragging && (
        <div class="drop-hint" aria-hidden="true">
          <Icon name="attach" size={36} />
          Drop to send
        </div>
      )}
      {viewer && (
        <div class="viewer" role="dialog" aria-label="Image" onClick={() => setViewer(undefined)} onKeyDown={(e) => e.key === 'Escape' && setViewer(undefined)} tabIndex={-1} ref={(el) => el?.focus()}>
          <img src={viewer} alt="Full size" data-testid="image-viewer" />
          <button class="icon-button viewer-close" type="button" aria-label="Close image">
            <Icon name="close" />
          </button>
        </div>
      )}
    </section>
  );
}

function MessageList(props: { peer: string; onOpenImage: (mediaId: string | undefined, localUrl?: string) => void }) {
  const model = useModel();
  const { peer } = props;
  const ref = useRef<HTMLDivElement>(null);
  const isAtBottom = useRef(true);
  const prevHeight = useRef(0);
  const isPrepending = useRef(false);
  const [now, setNow] = useState(Date.now());
  const messages = model.messagesOf(peer);
  const conv = model.state.conversations[peer];
  const isGroup = isGroupPeer(peer);

  // Recall buttons disappear after two minutes; day labels change at midnight.
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 5000);
    return () => clearInterval(t);
  }, []);

  useEffect(() => {
    isAtBottom.current = true;
  }, [peer]);

  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    if (isPrepending.current) {
      // Keep the view still while older messages are added above.
      el.scrollTop += el.scrollHeight - prevHeight.current;
      isPrepending.current = false;
    } else if (isAtBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
    prevHeight.current = el.scrollHeight;
  });

  async function onScroll() {
    const el = ref.current;
    if (!el) return;
    isAtBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    if (el.scrollTop < 200 && model.hasMore(peer) && !model.isLoading(peer)) {
      prevHeight.current = el.scrollHeight;
      isPrepending.current = true;
      const n = await model.loadOlder(peer);
      if (n === 0) isPrepending.current = false;
    }
  }

  // Fill the view: when the first page does not overflow, load more. And when a page arrived while the view sat at
  // the top (a render between the scroll and the page's arrival used up the scroll anchoring), load the next one:
  // at scrollTop 0 no further scroll event comes, so the history would stop loading.
  useEffect(() => {
    const el = ref.current;
    if (el && (el.scrollHeight <= el.clientHeight || el.scrollTop < 200) && model.hasMore(peer) && !model.isLoading(peer)) void onScroll();
  });

  let lastDay = '';
  let lastFrom = '';
  let lastTime = 0;
  const rows = [];
  for (const m of messages) {
    const day = dayKey(m.createTime);
    if (day !== lastDay) {
      rows.push(
        <div class="day-separator" key={`day-${day}`} role="separator" data-testid="day-separator">
          <span>{dayLabel(m.createTime, now)}</span>
        </div>,
      );
      lastDay = day;
      lastFrom = '';
    }
    const isFirstOfRun = m.from !== lastFrom || m.createTime - lastTime > 5 * 60_000;
    rows.push(<MessageItem key={m.clientMsgId || m.msgId} m={m} isGroup={isGroup} isFirstOfRun={isFirstOfRun} onOpenImage={props.onOpenImage} now={now} />);
    lastFrom = m.from;
    lastTime = m.createTime;
  }

  const lastMine = [...messages].reverse().find((m) => m.from === model.me && m.msgId);
  return (
    <div class="messages" ref={ref} onScroll={() => void onScroll()} role="log" aria-live="polite" aria-label="Messages" data-testid="message-list">
      {model.hasMore(peer) && !model.isLoading(peer) ? <div class="history-hint">Scroll up for older messages</div> : null}
      {model.isLoading(peer) && messages.length > 0 && (
        <div class="history-hint">
          <span class="spinner" /> Loading…
        </div>
      )}
      {!model.isLoading(peer) && messages.length === 0 && (
        <div class="chat-empty">
          <Avatar id={peer} name={model.titleOf(peer)} isGroup={isGroup} size={72} />
          <p>{isGroup ? `This is the start of ${model.titleOf(peer)}.` : `You and ${model.titleOf(peer)} are now contacts.`}</p>
          <p class="muted">Say hello 👋</p>
        </div>
      )}
      {rows}
      {!isGroup && lastMine?.status === 'read' && conv && <div class="seen">Seen</div>}
    </div>
  );
}

function Composer(props: { peer: string }) {
  const model = useModel();
  const { peer } = props;
  const [text, setText] = useState('');
  const [isEmojiOpen, setEmojiOpen] = useState(false);
  const [recording, setRecording] = useState<{ startedAt: number; elapsedMs: number } | undefined>();
  const [micError, setMicError] = useState('');
  const input = useRef<HTMLTextAreaElement>(null);
  const recorder = useRef<{ rec: MediaRecorder; chunks: Blob[]; startedAt: number; isCancelled: boolean; stream: MediaStream } | undefined>();
  const drafts = useRef(new Map<string, string>());

  // A draft per conversation.
  useEffect(() => {
    setText(drafts.current.get(peer) ?? '');
    input.current?.focus();
  }, [peer]);

  useLayoutEffect(() => {
    const el = input.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 180)}px`;
  }, [text]);

  function update(v: string) {
    setText(v);
    drafts.current.set(peer, v);
  }

  function send() {
    if (!text.trim()) return;
    void model.sendText(peer, text);
    update('');
    setEmojiOpen(false);
    input.current?.focus();
  }

  function onKeyDown(e: KeyboardEvent) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  }

  function onPaste(e: ClipboardEvent) {
    const files = Array.from(e.clipboardData?.files ?? []);
    if (files.length === 0) return;
    e.preventDefault();
    for (const f of files) void model.sendMedia(peer, f, f.type.startsWith('image/') ? 'image' : 'file');
  }

  function onPick(e: Event, kind: 'image' | 'file') {
    const el = e.target as HTMLInputElement;
    for (const f of Array.from(el.files ?? [])) void model.sendMedia(peer, f, kind === 'image' && f.type.startsWith('image/') ? 'image' : 'file');
    el.value = '';
  }

  function insertEmoji(emoji: string) {
    const el = input.current;
    const start = el?.selectionStart ?? text.length;
    const end = el?.selectionEnd ?? text.length;
    update(text.slice(0, start) + emoji + text.slice(end));
    requestAnimationFrame(() => {
      el?.focus();
      el?.setSelectionRange(start + emoji.length, start + emoji.length);
    });
  }

  async function startRecording(e: PointerEvent | undefined) {
    e?.preventDefault();
    setMicError('');
    // Hold to record: releasing anywhere sends; Escape cancels. A release before the microphone opened cancels.
    let isReleased = false;
    if (e) {
      window.addEventListener(
        'pointerup',
        () => {
          isReleased = true;
          if (recorder.current) stopRecording(false);
        },
        { once: true },
      );
    }
    if (!navigator.mediaDevices?.getUserMedia || typeof MediaRecorder === 'undefined') {
      setMicError('Voice notes need a browser with microphone recording.');
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const mime = ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus', 'audio/mp4'].find((t) => MediaRecorder.isTypeSupported(t));
      const rec = new MediaRecorder(stream, mime ? { mimeType: mime } : undefined);
      const state = { rec, chunks: [] as Blob[], startedAt: Date.now(), isCancelled: false, stream };
      recorder.current = state;
      rec.ondataavailable = (ev) => ev.data.size && state.chunks.push(ev.data);
      rec.onstop = () => {
        stream.getTracks().forEach((t) => t.stop());
        const durationMs = Date.now() - state.startedAt;
        if (state.isCancelled || durationMs < 500) return;
        const blob = new Blob(state.chunks, { type: (rec.mimeType || 'audio/webm').split(';')[0] });
        void model.sendMedia(peer, blob, 'voice', { durationMs });
      };
      rec.start(250);
      setRecording({ startedAt: state.startedAt, elapsedMs: 0 });
      if (isReleased) stopRecording(true);
      const onKey = (ev: KeyboardEvent) => {
        if (ev.key === 'Escape') stopRecording(true);
      };
      window.addEventListener('keydown', onKey);
      rec.addEventListener('stop', () => window.removeEventListener('keydown', onKey));
    } catch {
      setMicError('Microphone not available or permission denied.');
    }
  }

  function stopRecording(isCancelled = false) {
    const r = recorder.current;
    recorder.current = undefined;
    setRecording(undefined);
    if (!r) return;
    r.isCancelled = isCancelled;
    if (r.rec.state !== 'inactive') r.rec.stop();
  }

  useEffect(() => {
    if (!recording) return;
    const t = setInterval(() => setRecording((r) => r && { ...r, elapsedMs: Date.now() - r.startedAt }), 200);
    return () => clearInterval(t);
  }, [!!recording]);

  return (
    <footer class="composer">
      {isEmojiOpen && (
        <div class="emoji-panel" role="listbox" aria-label="Emoji">
          {EMOJI.map((e) => (
            <button key={e} type="button" role="option" aria-label={e} onClick={() => insertEmoji(e)}>
              {e}
            </button>
          ))}
        </div>
      )}
      {micError && (
        <p class="form-error composer-error" role="alert">
          {micError}
        </p>
      )}
      <div class="composer-row">
        <button class="icon-button" type="button" aria-label="Emoji" aria-expanded={isEmojiOpen} onClick={() => setEmojiOpen(!isEmojiOpen)}>
          <Icon name="smile" />
        </button>
        <label class="icon-button" title="Send a photo">
          <Icon name="image" />
          <input type="file" accept="image/*" multiple class="visually-hidden" data-testid="image-input" aria-label="Send a photo" onChange={(e) => onPick(e, 'image')} />
        </label>
        <label class="icon-button" title="Send a file">
          <Icon name="attach" />
          <input type="file" multiple class="visually-hidden" data-testid="file-input" aria-label="Send a file" onChange={(e) => onPick(e, 'file')} />
        </label>
        {recording ? (
          <div class="recording" role="status">
            <span class="rec-dot" /> Recording {Math.floor(recording.elapsedMs / 1000)}s · release to send, Esc to cancel
          </div>
        ) : (
          <textarea
            ref={input}
            rows={1}
            value={text}
            placeholder="Write a message…"
            aria-label="Message"
            data-testid="composer-input"
            onInput={(e) => update((e.target as HTMLTextAreaElement).value)}
            onKeyDown={onKeyDown}
            onPaste={onPaste}
          />
        )}
        {text.trim() || recording ? (
          recording ? (
            <button class="send-button recording-button" type="button" aria-label="Send voice message" onClick={() => stopRecording(false)}>
              <Icon name="mic" size={22} />
            </button>
          ) : (
            <button class="send-button" type="button" aria-label="Send" data-testid="composer-send" onClick={send}>
              <Icon name="send" size={22} />
            </button>
          )
        ) : (
          <button
            class="send-button mic"
            type="button"
            aria-label="Hold to record a voice message"
            title="Hold to record a voice message"
            data-testid="voice-record"
            onPointerDown={(e) => void startRecording(e)}
            onClick={(e) => {
              // Keyboard: Enter or Space starts; the recording bar's button sends.
              if (e.detail === 0) void startRecording(undefined);
            }}
          >
            <Icon name="mic" size={22} />
          </button>
        )}
      </div>
    </footer>
  );
}
