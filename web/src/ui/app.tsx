/**
 * The app shell: the sign-in screen, or the sidebar and the open chat side by side (one at a time on phones),
 * the connection banner and the dialogs.
 */
import { useEffect, useState } from 'preact/hooks';
import type { ChatModel } from '../model.ts';
import { AuthScreen } from './auth.tsx';
import { ChatPane } from './chat.tsx';
import { Icon, ModelContext, useModel } from './common.tsx';
import { DevicesDialog, GroupInfoDialog, NewGroupDialog } from './dialogs.tsx';
import { QrConfirmDialog, clearQrHash, qrUuidInLocation } from './qr-login.tsx';
import { Sidebar, type Dialog } from './sidebar.tsx';

/** The root component. */
export function App(props: { model: ChatModel }) {
  return (
    <ModelContext.Provider value={props.model}>
      <Root />
    </ModelContext.Provider>
  );
}

function Root() {
  const model = useModel();
  if (!model.isLoggedIn) return <AuthScreen model={model} notice={model.endedReason} />;
  return <Shell />;
}

function ConnectionBanner() {
  const model = useModel();
  const c = model.connection;
  if (c.state === 'online') return null;
  // A server going away (1102, a drain) sends the app to another gateway: no loss, so no warning, just a note.
  if (c.isMoving) {
    return (
      <div class="connection-banner" role="status" data-testid="connection-banner" data-state={c.state} data-moving="">
        <span class="spinner small" />
        <span>Reconnecting…</span>
      </div>
    );
  }
  const isLost = model.hasBeenOnline || c.state === 'offline';
  const text = !isLost
    ? 'Connecting…'
    : c.state === 'connecting'
      ? 'Connection lost. Reconnecting…'
      : `Connection lost. Reconnecting${c.retryInMs ? ` in ${Math.max(1, Math.round(c.retryInMs / 1000))} s` : ''}… Messages you write wait and go out when you are back.`;
  return (
    <div class={`connection-banner${isLost ? ' lost' : ''}`} role="status" data-testid="connection-banner" data-state={c.state}>
      {isLost ? <Icon name="wifiOff" size={16} /> : <span class="spinner small" />}
      <span>{text}</span>
    </div>
  );
}

function Shell() {
  const model = useModel();
  // A QR code's link (`#qr=<uuid>`, opened by a phone's camera) opens the confirm dialog, now or when it changes.
  const [qrUuid, setQrUuid] = useState(qrUuidInLocation);
  const [dialog, setDialog] = useState<Dialog>(qrUuid ? 'qrConfirm' : undefined);
  useEffect(() => {
    const onHash = () => {
      const uuid = qrUuidInLocation();
      if (!uuid) return;
      setQrUuid(uuid);
      setDialog('qrConfirm');
    };
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  const peer = model.activePeer;
  return (
    <div class={`shell${peer ? ' has-chat' : ''}`}>
      <ConnectionBanner />
      <div class="columns">
        <Sidebar onDialog={setDialog} />
        <main class="main">
          {peer ? (
            <ChatPane key={peer} peer={peer} onBack={() => model.open(undefined)} onGroupInfo={() => setDialog('groupInfo')} />
          ) : (
            <div class="welcome">
              <img src="/favicon.svg" alt="" width="72" height="72" />
              <h2>Welcome, {model.nameOf(model.me)}</h2>
              <p class="muted">Pick a conversation, or add a contact by username to start one.</p>
              <p class="muted small">Enter sends · Shift+Enter adds a line · paste or drop images to share them</p>
            </div>
          )}
        </main>
      </div>
      {dialog === 'newGroup' && <NewGroupDialog onClose={() => setDialog(undefined)} />}
      {dialog === 'devices' && <DevicesDialog onClose={() => setDialog(undefined)} />}
      {dialog === 'qrConfirm' && (
        <QrConfirmDialog key={qrUuid} initialUuid={qrUuid} onClose={() => (clearQrHash(), setQrUuid(undefined), setDialog(undefined))} />
      )}
      {dialog === 'groupInfo' && peer && <GroupInfoDialog groupId={peer} onClose={() => setDialog(undefined)} />}
    </div>
  );
}
