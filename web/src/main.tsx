/**
 * Entry point of the Synchat web client (docs/web.md): restores the cached session and chat from IndexedDB,
 * renders at once, and connects in the background.
 */
import { render } from 'preact';
import { ChatModel } from './model.ts';
import { App } from './ui/app.tsx';
import './styles.css';

const model = new ChatModel();
// Tests and the screenshot script read the model's state through this handle; the app itself does not use it.
(window as unknown as { synchat: ChatModel }).synchat = model;
const root = document.getElementById('app')!;
void model.boot().finally(() => render(<App model={model} />, root));
