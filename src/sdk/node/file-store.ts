/**
 * A {@link ClientStore} in one JSON file (Node). Each save writes a temp file, fsyncs it and renames it over the
 * old one, so a crash leaves either the old or the new state, never a torn file.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ClientStore } from '../store.ts';
import type { OutboxItem, SessionState } from '../types.ts';

interface FileState {
  session?: SessionState;
  outbox: OutboxItem[];
}

/** Stores session, sync key and outbox in `file`. */
export class FileStore implements ClientStore {
  readonly file: string;
  #state: FileState | undefined;

  constructor(file: string) {
    this.file = file;
  }

  async loadSession(): Promise<SessionState | undefined> {
    const s = (await this.#load()).session;
    return s ? structuredClone(s) : undefined;
  }

  async saveSession(session: SessionState | undefined): Promise<void> {
    const state = await this.#load();
    state.session = session ? structuredClone(session) : undefined;
    await this.#write(state);
  }

  async loadOutbox(): Promise<OutboxItem[]> {
    return structuredClone((await this.#load()).outbox);
  }

  async saveOutbox(items: readonly OutboxItem[]): Promise<void> {
    const state = await this.#load();
    state.outbox = structuredClone([...items]);
    await this.#write(state);
  }

  async #load(): Promise<FileState> {
    if (this.#state) return this.#state;
    let text: string | undefined;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const parsed = text ? (JSON.parse(text) as Partial<FileState>) : {};
    this.#state = { session: parsed.session, outbox: Array.isArray(parsed.outbox) ? parsed.outbox : [] };
    return this.#state;
  }

  async #write(state: FileState): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(state));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.file);
  }
}
