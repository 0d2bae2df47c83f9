/**
 * The sign-in screen: log in, or create an account (which signs you in).
 */
import { useState } from 'preact/hooks';
import { Icon, errorText } from './common.tsx';
import type { ChatModel } from '../model.ts';
import { QrLoginPanel } from './qr-login.tsx';

/** Login and registration. */
export function AuthScreen(props: { model: ChatModel; notice?: string }) {
  const [mode, setMode] = useState<'login' | 'register'>('login');
  const [error, setError] = useState('');
  const [isBusy, setBusy] = useState(false);
  const [isQr, setQr] = useState(false);

  async function onSubmit(e: Event) {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const username = String(form.get('username') ?? '').trim().toLowerCase();
    const password = String(form.get('password') ?? '');
    setError('');
    setBusy(true);
    try {
      if (mode === 'register') await props.model.register(username, password, String(form.get('displayName') ?? '').trim() || username);
      else await props.model.login(username, password);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  const p = mode === 'login' ? 'login' : 'register';
  return (
    <main class="auth">
      <section class="auth-hero" aria-hidden="true">
        <div class="auth-logo">
          <img src="/favicon.svg" alt="" width="56" height="56" />
        </div>
        <h1>Synchat</h1>
        <p>Messages that arrive once, in order, on every device — even after the network drops.</p>
        <ul class="auth-points">
          <li>
            <Icon name="devices" /> All your devices in step
          </li>
          <li>
            <Icon name="wifiOff" /> Write offline, sent on reconnect
          </li>
          <li>
            <Icon name="lock" /> Your history, cached on this device
          </li>
        </ul>
      </section>
      <section class="auth-card">
        {isQr ? (
          <QrLoginPanel model={props.model} onCancel={() => setQr(false)} />
        ) : (
          <>
            <div class="auth-tabs" role="tablist">
              <button role="tab" type="button" aria-selected={mode === 'login'} class={mode === 'login' ? 'active' : ''} onClick={() => (setMode('login'), setError(''))}>
                Log in
              </button>
              <button role="tab" type="button" aria-selected={mode === 'register'} class={mode === 'register' ? 'active' : ''} onClick={() => (setMode('register'), setError(''))}>
                Create account
              </button>
            </div>
            {props.notice && <p class="auth-notice">{props.notice}</p>}
            <form key={mode} onSubmit={onSubmit} class="auth-form">
              <label>
                Username
                <input
                  name="username"
                  data-testid={`${p}-username`}
                  autocomplete="username"
                  required
                  minLength={3}
                  maxLength={32}
                  pattern="[A-Za-z0-9_]{3,32}"
                  title="3–32 letters, digits or _"
                  autoFocus
                  spellcheck={false}
                  autocapitalize="none"
                />
              </label>
              {mode === 'register' && (
                <label>
                  Display name
                  <input name="displayName" data-testid="register-display-name" autocomplete="name" maxLength={64} placeholder="How others see you" />
                </label>
              )}
              <label>
                Password
                <input
                  name="password"
                  type="password"
                  data-testid={`${p}-password`}
                  autocomplete={mode === 'login' ? 'current-password' : 'new-password'}
                  required
                  minLength={8}
                  maxLength={256}
                />
              </label>
              {error && (
                <p class="form-error" role="alert">
                  {error}
                </p>
              )}
              <button class="primary big" type="submit" data-testid={`${p}-submit`} disabled={isBusy}>
                {isBusy ? <span class="spinner" aria-label="Working" /> : mode === 'login' ? 'Log in' : 'Create account'}
              </button>
            </form>
            {mode === 'login' && (
              <button class="ghost qr-login-open" type="button" data-testid="qr-login-open" onClick={() => (setQr(true), setError(''))}>
                Log in with a QR code
              </button>
            )}
          </>
        )}
      </section>
    </main>
  );
}
