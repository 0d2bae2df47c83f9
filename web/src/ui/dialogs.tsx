/**
 * Dialogs: create a group, a group's members (add, remove, rename, leave), and my devices (each one's last
 * activity, log one out or all of them, change the password).
 */
import { useEffect, useState } from 'preact/hooks';
import type { DeviceSession } from '../../../src/sdk/index.ts';
import { shortTime } from '../format.ts';
import { Avatar, Icon, Modal, errorText, useModel } from './common.tsx';

function ContactPicker(props: { exclude?: string[]; selected: Set<string>; onToggle: (u: string) => void }) {
  const model = useModel();
  const contacts = Object.values(model.state.contacts)
    .filter((c) => !props.exclude?.includes(c.username))
    .sort((a, b) => a.displayName.localeCompare(b.displayName));
  if (contacts.length === 0) return <p class="muted">No contacts to add.</p>;
  return (
    <ul class="picker" role="list">
      {contacts.map((c) => (
        <li key={c.username}>
          <label class="picker-row">
            <input type="checkbox" checked={props.selected.has(c.username)} onChange={() => props.onToggle(c.username)} data-testid="pick-member" value={c.username} />
            <Avatar id={c.username} name={c.displayName} size={32} />
            <span>
              {c.displayName} <span class="muted">@{c.username}</span>
            </span>
          </label>
        </li>
      ))}
    </ul>
  );
}

function useSelection(): [Set<string>, (u: string) => void] {
  const [selected, setSelected] = useState(new Set<string>());
  return [
    selected,
    (u) => {
      const next = new Set(selected);
      if (next.has(u)) next.delete(u);
      else next.add(u);
      setSelected(next);
    },
  ];
}

/** Create a group. */
export function NewGroupDialog(props: { onClose: () => void }) {
  const model = useModel();
  const [name, setName] = useState('');
  const [selected, toggle] = useSelection();
  const [error, setError] = useState('');
  const [isBusy, setBusy] = useState(false);
  async function onSubmit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      const id = await model.createGroup(name.trim(), [...selected]);
      model.open(id);
      props.onClose();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <Modal title="New group" onClose={props.onClose}>
      <form onSubmit={onSubmit} class="stack">
        <label>
          Group name
          <input value={name} required maxLength={64} data-testid="group-name" onInput={(e) => setName((e.target as HTMLInputElement).value)} placeholder="Weekend trip" />
        </label>
        <div class="field-label">Members</div>
        <ContactPicker selected={selected} onToggle={toggle} />
        {error && <p class="form-error">{error}</p>}
        <button class="primary" type="submit" disabled={isBusy || !name.trim()} data-testid="group-create">
          Create group{selected.size ? ` with ${selected.size}` : ''}
        </button>
      </form>
    </Modal>
  );
}

/** A group's members. */
export function GroupInfoDialog(props: { groupId: string; onClose: () => void }) {
  const model = useModel();
  const group = model.state.groups[props.groupId];
  const [selected, toggle] = useSelection();
  const [name, setName] = useState(group?.name ?? '');
  const [error, setError] = useState('');
  if (!group) return null;
  async function run(f: () => Promise<void>) {
    setError('');
    try {
      await f();
    } catch (err) {
      setError(errorText(err));
    }
  }
  return (
    <Modal title={group.name} onClose={props.onClose}>
      <div class="stack">
        <form class="inline-form" onSubmit={(e) => (e.preventDefault(), void run(() => model.renameGroup(group.groupId, name.trim())))}>
          <input value={name} maxLength={64} aria-label="Group name" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
          <button class="ghost" type="submit" disabled={!name.trim() || name.trim() === group.name}>
            Rename
          </button>
        </form>
        <div class="field-label">{group.members.length} members</div>
        <ul class="member-list" role="list">
          {group.members.map((u) => (
            <li key={u} class="member" data-testid="group-member" data-username={u}>
              <Avatar id={u} name={model.nameOf(u)} size={32} />
              <span class="grow">
                {model.nameOf(u)} {u === model.me && <span class="muted">(you)</span>}
              </span>
              {u !== model.me && (
                <button class="ghost small" type="button" aria-label={`Remove ${u}`} onClick={() => void run(() => model.changeMembers(group.groupId, { remove: [u] }))}>
                  Remove
                </button>
              )}
            </li>
          ))}
        </ul>
        <div class="field-label">Add members</div>
        <ContactPicker exclude={group.members} selected={selected} onToggle={toggle} />
        {selected.size > 0 && (
          <button class="primary" type="button" onClick={() => void run(() => model.changeMembers(group.groupId, { add: [...selected] }))}>
            Add {selected.size}
          </button>
        )}
        {error && <p class="form-error">{error}</p>}
        <button
          class="danger"
          type="button"
          data-testid="group-leave"
          onClick={() =>
            void run(async () => {
              await model.leaveGroup(group.groupId);
              props.onClose();
            })
          }
        >
          Leave group
        </button>
      </div>
    </Modal>
  );
}

/** Change the password: the other devices are logged out by the server (they show "logged out from another device"). */
function ChangePasswordForm(props: { onChanged: () => void }) {
  const model = useModel();
  const [error, setError] = useState('');
  const [isDone, setDone] = useState(false);
  const [isBusy, setBusy] = useState(false);
  async function onSubmit(e: Event) {
    e.preventDefault();
    const form = e.target as HTMLFormElement;
    const data = new FormData(form);
    setBusy(true);
    setError('');
    setDone(false);
    try {
      await model.changePassword(String(data.get('oldPassword') ?? ''), String(data.get('newPassword') ?? ''));
      form.reset();
      setDone(true);
      props.onChanged();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <form onSubmit={onSubmit} class="stack" data-testid="password-form">
      <h3 class="dialog-heading">Change password</h3>
      <label>
        Current password
        <input name="oldPassword" type="password" required autocomplete="current-password" data-testid="password-old" />
      </label>
      <label>
        New password
        <input name="newPassword" type="password" required minLength={8} maxLength={256} autocomplete="new-password" data-testid="password-new" />
      </label>
      {error && <p class="form-error">{error}</p>}
      {isDone && <p class="form-ok">Password changed. Your other devices were logged out.</p>}
      <button class="primary" type="submit" disabled={isBusy} data-testid="password-submit">
        Change password
      </button>
    </form>
  );
}

/** My devices (with each one's last activity), "log out" for each, "log out everywhere", and the password. */
export function DevicesDialog(props: { onClose: () => void }) {
  const model = useModel();
  const [sessions, setSessions] = useState<DeviceSession[] | undefined>();
  const [error, setError] = useState('');
  async function load() {
    try {
      setSessions(await model.listSessions());
    } catch (err) {
      setError(errorText(err));
    }
  }
  useEffect(() => void load(), []);
  return (
    <Modal title="Your devices" onClose={props.onClose}>
      {!sessions && !error && <span class="spinner" />}
      {error && <p class="form-error">{error}</p>}
      <ul class="device-list" role="list">
        {sessions
          ?.sort((a, b) => Number(b.isCurrent) - Number(a.isCurrent) || b.lastSeenTime - a.lastSeenTime)
          .map((s) => (
            <li key={s.sessionId} class="device" data-testid="device" data-current={s.isCurrent ? 'true' : 'false'}>
              <span class="device-icon">
                <Icon name="devices" />
              </span>
              <span class="grow">
                <strong>{s.deviceName || s.deviceId}</strong>
                {s.isCurrent && <span class="pill">This browser</span>}
                <span class="muted block">Last active {shortTime(s.lastSeenTime)} · signed in {shortTime(s.createTime)}</span>
              </span>
              {s.isCurrent ? (
                <button class="ghost small" type="button" onClick={() => void model.logout()}>
                  Log out
                </button>
              ) : (
                <button
                  class="danger small"
                  type="button"
                  data-testid="device-logout"
                  onClick={() =>
                    void model
                      .revokeSession(s.sessionId)
                      .then(load)
                      .catch((err) => setError(errorText(err)))
                  }
                >
                  Log out
                </button>
              )}
            </li>
          ))}
      </ul>
      <div class="dialog-section row-between">
        <span class="muted">Lost a device? End every session, this one included.</span>
        <button class="danger small" type="button" data-testid="logout-everywhere" onClick={() => void model.logout({ everywhere: true })}>
          Log out everywhere
        </button>
      </div>
      <div class="dialog-section">
        <ChangePasswordForm onChanged={() => void load()} />
      </div>
    </Modal>
  );
}
