/**
 * The left column: who I am, the conversation list (by last activity, with preview, time and unread count), and
 * the contacts tab (requests to answer, adding a contact, the contact list).
 */
import { useEffect, useState } from 'preact/hooks';
import { MSG_TYPE } from '../../../src/sdk/index.ts';
import { isGroupPeer, previewOf, shortTime } from '../format.ts';
import { BlockButton } from './chat.tsx';
import { Avatar, Icon, errorText, useModel } from './common.tsx';

/** Which dialog the shell shows. */
export type Dialog = 'newGroup' | 'devices' | 'groupInfo' | 'qrConfirm' | undefined;

/** The sidebar. */
export function Sidebar(props: { onDialog: (d: Dialog) => void }) {
  const model = useModel();
  const [tab, setTab] = useState<'chats' | 'contacts'>('chats');
  const [filter, setFilter] = useState('');
  const [isMenuOpen, setMenuOpen] = useState(false);
  const requests = Object.values(model.state.requests);
  const me = model.me;

  return (
    <aside class="sidebar" aria-label="Conversations">
      <header class="sidebar-header">
        <Avatar id={me} name={model.nameOf(me)} size={38} />
        <div class="me">
          <strong>{model.nameOf(me)}</strong>
          <span>@{me}</span>
        </div>
        <button class="icon-button" type="button" aria-label="New group" title="New group" onClick={() => props.onDialog('newGroup')}>
          <Icon name="group" />
        </button>
        <div class="menu-wrap">
          <button class="icon-button" type="button" aria-label="Menu" aria-haspopup="menu" aria-expanded={isMenuOpen} onClick={() => setMenuOpen(!isMenuOpen)}>
            <Icon name="more" />
          </button>
          {isMenuOpen && (
            <div class="menu" role="menu" onMouseLeave={() => setMenuOpen(false)}>
              <button role="menuitem" type="button" onClick={() => (setMenuOpen(false), props.onDialog('devices'))}>
                <Icon name="devices" /> Devices
              </button>
              <button role="menuitem" type="button" data-testid="menu-qr-confirm" onClick={() => (setMenuOpen(false), props.onDialog('qrConfirm'))}>
                <Icon name="devices" /> Confirm a login
              </button>
              {'Notification' in window && Notification.permission === 'default' && (
                <button role="menuitem" type="button" onClick={() => (setMenuOpen(false), void Notification.requestPermission())}>
                  <Icon name="chat" /> Enable notifications
                </button>
              )}
              <button role="menuitem" type="button" data-testid="logout" onClick={() => (setMenuOpen(false), void model.logout())}>
                <Icon name="logout" /> Log out
              </button>
            </div>
          )}
        </div>
      </header>
      <div class="tabs" role="tablist">
        <button role="tab" type="button" aria-selected={tab === 'chats'} class={tab === 'chats' ? 'active' : ''} onClick={() => setTab('chats')} data-testid="tab-chats">
          <Icon name="chat" size={18} /> Chats
          {model.unreadTotal > 0 && <span class="badge">{model.unreadTotal}</span>}
        </button>
        <button role="tab" type="button" aria-selected={tab === 'contacts'} class={tab === 'contacts' ? 'active' : ''} onClick={() => setTab('contacts')} data-testid="tab-contacts">
          <Icon name="contacts" size={18} /> Contacts
          {requests.length > 0 && <span class="badge">{requests.length}</span>}
        </button>
      </div>
      {tab === 'chats' ? (
        <>
          <div class="search">
            <Icon name="search" size={18} />
            <input type="search" placeholder="Search chats" aria-label="Search chats" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} />
          </div>
          <ConversationList filter={filter} onEmpty={() => setTab('contacts')} />
        </>
      ) : (
        <ContactsPane onOpen={() => setTab('chats')} />
      )}
    </aside>
  );
}

function ConversationList(props: { filter: string; onEmpty: () => void }) {
  const model = useModel();
  const f = props.filter.trim().toLowerCase();
  const list = model.conversations().filter((c) => !f || model.titleOf(c.peer).toLowerCase().includes(f) || c.peer.includes(f));
  if (model.conversations().length === 0) {
    return (
      <div class="empty-list">
        <p>No conversations yet.</p>
        <button class="primary" type="button" onClick={props.onEmpty}>
          <Icon name="personAdd" size={18} /> Add a contact
        </button>
      </div>
    );
  }
  return (
    <ul class="conversation-list" role="list">
      {list.map((c) => {
        const title = model.titleOf(c.peer);
        const last = c.last;
        const who = last && c.isGroup && last.type !== MSG_TYPE.SYSTEM ? (last.from === model.me ? 'You: ' : `${model.nameOf(last.from)}: `) : last?.from === model.me ? 'You: ' : '';
        const preview = last ? who + previewOf(last.type, last.content, last.recalled) : c.isGroup ? 'Group created' : 'Say hello 👋';
        return (
          <li key={c.peer}>
            <button
              type="button"
              class={`conversation${model.activePeer === c.peer ? ' active' : ''}${c.unread ? ' unread' : ''}`}
              data-testid="conversation-item"
              data-peer={c.peer}
              aria-current={model.activePeer === c.peer ? 'true' : undefined}
              aria-label={`${title}${c.unread ? `, ${c.unread} unread` : ''}`}
              onClick={() => model.open(c.peer)}
            >
              <Avatar id={c.peer} name={title} isGroup={isGroupPeer(c.peer)} size={46} />
              <span class="conversation-main">
                <span class="conversation-top">
                  <span class="conversation-title">{title}</span>
                  {last && <time class="conversation-time">{shortTime(c.lastTime)}</time>}
                </span>
                <span class="conversation-bottom">
                  <span class={`conversation-preview${last?.recalled ? ' recalled' : ''}`}>{preview}</span>
                  {c.unread > 0 && (
                    <span class="badge" data-testid="unread-count">
                      {c.unread > 99 ? '99+' : c.unread}
                    </span>
                  )}
                </span>
              </span>
            </button>
          </li>
        );
      })}
    </ul>
  );
}

function ContactsPane(props: { onOpen: () => void }) {
  const model = useModel();
  const [username, setUsername] = useState('');
  const [note, setNote] = useState('');
  const [found, setFound] = useState<{ username: string; displayName: string } | undefined>();
  const [message, setMessage] = useState<{ text: string; isError: boolean } | undefined>();
  const [isBusy, setBusy] = useState(false);

  useEffect(() => {
    const u = username.trim().toLowerCase();
    setFound(undefined);
    if (!/^[a-z0-9_]{3,32}$/.test(u)) return;
    const t = setTimeout(() => {
      model.lookup(u).then(
        (r) => setFound(r),
        () => setFound(undefined),
      );
    }, 300);
    return () => clearTimeout(t);
  }, [username]);

  async function onRequest(e: Event) {
    e.preventDefault();
    const u = username.trim().toLowerCase();
    if (!u) return;
    setBusy(true);
    setMessage(undefined);
    try {
      if (model.state.contacts[u]) throw new Error(`${model.nameOf(u)} is already a contact`);
      await model.requestContact(u, note);
      setMessage({ text: `Request sent to ${found?.displayName ?? u}`, isError: false });
      setUsername('');
      setNote('');
    } catch (err) {
      const text = errorText(err);
      setMessage({ text: /not found/i.test(text) ? `No user named “${u}”` : text, isError: true });
    } finally {
      setBusy(false);
    }
  }

  const requests = Object.values(model.state.requests).sort((a, b) => b.time - a.time);
  const outgoing = Object.entries(model.state.outgoing);
  const contacts = Object.values(model.state.contacts).sort((a, b) => a.displayName.localeCompare(b.displayName));
  const blocked = Object.keys(model.state.blocked ?? {}).sort();

  return (
    <div class="contacts-pane">
      <form class="add-contact card" onSubmit={onRequest}>
        <h3>
          <Icon name="personAdd" size={18} /> Add a contact
        </h3>
        <input
          data-testid="contact-search"
          aria-label="Username to add"
          placeholder="Username"
          value={username}
          spellcheck={false}
          autocapitalize="none"
          onInput={(e) => setUsername((e.target as HTMLInputElement).value)}
        />
        {found && (
          <div class="found">
            <Avatar id={found.username} name={found.displayName} size={28} /> {found.displayName} <span class="muted">@{found.username}</span>
          </div>
        )}
        <input data-testid="contact-note" aria-label="Note" placeholder="Add a note (optional)" maxLength={200} value={note} onInput={(e) => setNote((e.target as HTMLInputElement).value)} />
        <button class="primary" type="submit" data-testid="contact-request-submit" disabled={isBusy || !username.trim()}>
          Send request
        </button>
        {message && (
          <p class={message.isError ? 'form-error' : 'form-ok'} role="status">
            {message.text}
          </p>
        )}
      </form>

      {requests.length > 0 && (
        <section aria-label="Contact requests">
          <h4 class="section-title">Requests</h4>
          <ul class="request-list" role="list">
            {requests.map((r) => (
              <li key={r.from} class="request" data-testid="contact-request" data-from={r.from}>
                <Avatar id={r.from} name={model.nameOf(r.from)} size={40} />
                <div class="request-main">
                  <strong>{model.nameOf(r.from)}</strong>
                  <span class="muted">@{r.from}</span>
                  {r.note && <q class="request-note">{r.note}</q>}
                </div>
                <div class="request-actions">
                  <button class="primary small" type="button" data-testid="contact-accept" onClick={() => void model.accept(r.from).catch(() => {})}>
                    Accept
                  </button>
                  <button class="ghost small" type="button" aria-label={`Decline ${r.from}`} onClick={() => void model.decline(r.from).catch(() => {})}>
                    Decline
                  </button>
                </div>
              </li>
            ))}
          </ul>
        </section>
      )}

      {outgoing.length > 0 && (
        <section aria-label="Sent requests">
          <h4 class="section-title">Waiting for answer</h4>
          <ul class="contact-list" role="list">
            {outgoing.map(([u]) => (
              <li key={u} class="contact pending">
                <Avatar id={u} name={model.nameOf(u)} size={36} />
                <span>
                  {model.nameOf(u)} <span class="muted">@{u}</span>
                </span>
              </li>
            ))}
          </ul>
        </section>
      )}

      <section aria-label="Contacts">
        <h4 class="section-title">Contacts · {contacts.length}</h4>
        {contacts.length === 0 && <p class="muted pad">Nobody yet. Add someone by username above.</p>}
        <ul class="contact-list" role="list">
          {contacts.map((c) => (
            <li key={c.username}>
              <button
                type="button"
                class="contact"
                data-testid="contact-item"
                data-username={c.username}
                onClick={() => {
                  model.open(c.username);
                  props.onOpen();
                }}
              >
                <Avatar id={c.username} name={c.displayName} size={36} />
                <span>
                  {c.displayName} <span class="muted">@{c.username}</span>
                </span>
                {model.isBlocked(c.username) && (
                  <span class="blocked-tag" data-testid="blocked-tag">
                    Blocked
                  </span>
                )}
              </button>
            </li>
          ))}
        </ul>
      </section>

      {blocked.length > 0 && (
        <section aria-label="Blocked">
          <h4 class="section-title">Blocked · {blocked.length}</h4>
          <ul class="contact-list" role="list">
            {blocked.map((u) => (
              <li key={u} class="contact" data-testid="blocked-item" data-username={u}>
                <Avatar id={u} name={model.nameOf(u)} size={36} />
                <span>
                  {model.nameOf(u)} <span class="muted">@{u}</span>
                </span>
                <BlockButton username={u} name={model.nameOf(u)} isText />
              </li>
            ))}
          </ul>
        </section>
      )}
    </div>
  );
}
