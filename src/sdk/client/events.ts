/**
 * The client's typed events: the emitter that reports throwing listeners as `error`, and the dispatch of one
 * applied sync entry to `entry` plus its kind's event (docs/sdk.md "Events").
 */
import type { Entry } from '../../protocol/index.ts';
import { Emitter } from '../emitter.ts';
import type { ClientEvents } from '../types.ts';
import type { ClientContext } from './context.ts';

/**
 * A new emitter of {@link ClientEvents}. A listener that throws is reported as an `error` event on a later
 * microtask, when someone listens to `error`; a listener of `error` that throws is not reported again (no loop).
 */
export function createClientEmitter(): Emitter<ClientEvents> {
  const events: Emitter<ClientEvents> = new Emitter<ClientEvents>((err) => {
    if (events.hasListeners('error')) queueMicrotask(() => events.emit('error', err instanceof Error ? err : new Error(String(err))));
  });
  return events;
}

/**
 * Emits one applied entry: `entry` first, then the kind's own event. A message from this user also settles its
 * outbox item (its log entry may arrive before its SEND_ACK). The username is read after `entry` listeners ran,
 * so a listener that ends the session is seen at once.
 */
export function dispatchEntry(ctx: Pick<ClientContext, 'events' | 'session' | 'outbox'>, e: Entry): void {
  const events = ctx.events;
  events.emit('entry', e);
  switch (e.kind) {
    case 'msg':
      if (e.from === ctx.session?.username) ctx.outbox.matchSent(e.clientMsgId, { msgId: e.msgId, seq: e.seq, createTime: e.createTime, duplicate: false });
      events.emit('message', e);
      break;
    case 'read':
      events.emit(e.by === ctx.session?.username ? 'read' : 'receipt', e);
      break;
    case 'revoke':
      events.emit('recall', e);
      break;
    case 'contact':
      events.emit('contact', e);
      break;
    case 'contactRequest':
      events.emit('contactRequest', e);
      break;
    case 'group':
      events.emit('group', e);
      break;
  }
}
