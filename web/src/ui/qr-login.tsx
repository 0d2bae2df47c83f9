/**
 * QR login (docs/web.md "QR login"): the login screen's QR code, which a logged-in device confirms, and the
 * logged-in device's "Confirm a login" dialog (paste the code or link, or scan it with the camera). The code is
 * a link, `<origin>/#qr=<uuid>`, so a phone's camera app opens this app straight in that dialog.
 */
import QRCode from 'qrcode';
import { useEffect, useRef, useState } from 'preact/hooks';
import { QR_UUID_PATTERN } from '../../../src/protocol/index.ts';
import type { QrAskingDevice, QrLoginTicket } from '../../../src/sdk/index.ts';
import { timeOfDay } from '../format.ts';
import type { ChatModel } from '../model.ts';
import { Modal, errorText, useModel } from './common.tsx';

/** The hash a QR code's link carries. */
const QR_HASH = /^#qr=([0-9a-f]{32})$/;

/** The link a QR code shows: this app, opened on the confirm dialog for `uuid`. */
export function qrLink(uuid: string): string {
  return `${location.origin}/#qr=${uuid}`;
}

/** The uuid in a pasted or scanned text: a bare uuid, or a link ending in `#qr=<uuid>`; undefined otherwise. */
export function qrUuidOf(text: string): string | undefined {
  const t = text.trim();
  if (new RegExp(QR_UUID_PATTERN).test(t)) return t;
  const hash = t.slice(t.indexOf('#'));
  return t.includes('#') ? QR_HASH.exec(hash)?.[1] : undefined;
}

/** The uuid in this page's address (a QR code opened by a camera app), if any. */
export function qrUuidInLocation(): string | undefined {
  return QR_HASH.exec(location.hash)?.[1];
}

/** Removes `#qr=…` from the address (after the dialog closes), keeping the page. */
export function clearQrHash(): void {
  if (QR_HASH.test(location.hash)) history.replaceState(null, '', location.pathname + location.search);
}

/**
 * The login screen's QR code: asks for a uuid, draws it (on a canvas: the CSP allows no `data:` images), waits for a
 * logged-in device to confirm, and shows a new code when one expires.
 */
export function QrLoginPanel(props: { model: ChatModel; onCancel: () => void }) {
  const [ticket, setTicket] = useState<QrLoginTicket>();
  const [scannedBy, setScannedBy] = useState<string>();
  const [error, setError] = useState('');
  const [round, setRound] = useState(0);
  const canvas = useRef<HTMLCanvasElement>(null);

  useEffect(() => {
    const stop = new AbortController();
    setScannedBy(undefined);
    setError('');
    void (async () => {
      try {
        const t = await props.model.qrLoginNew();
        if (stop.signal.aborted) return;
        setTicket(t);
        await props.model.waitQrLogin(t, { signal: stop.signal, onScanned: (name) => setScannedBy(name) });
      } catch (err) {
        if (stop.signal.aborted) return;
        // Expired (ret 3): a new code. Anything else is shown, with a button to try again.
        if ((err as { ret?: number }).ret === 3) setRound((r) => r + 1);
        else setError(errorText(err));
      }
    })();
    return () => stop.abort();
  }, [round]);

  useEffect(() => {
    if (ticket && canvas.current) void QRCode.toCanvas(canvas.current, qrLink(ticket.uuid), { width: 232, margin: 2, errorCorrectionLevel: 'M' });
  }, [ticket]);

  return (
    <div class="qr-login" data-testid="qr-login" data-qr-uuid={ticket?.uuid ?? ''} data-state={scannedBy ? 'scanned' : ticket ? 'waiting' : 'loading'}>
      <div class="qr-frame">{ticket ? <canvas ref={canvas} data-testid="qr-code" aria-label="QR code to log in" /> : <span class="spinner" />}</div>
      {scannedBy ? (
        <p class="qr-status" role="status" data-testid="qr-scanned">
          Scanned by <strong>{scannedBy}</strong>. Confirm on that device to log in here.
        </p>
      ) : (
        <p class="qr-status muted" role="status">
          On a device where you are logged in, open the menu, choose <strong>Confirm a login</strong> and scan this code — or
          open its link there.
        </p>
      )}
      {ticket && (
        <input class="qr-link" readOnly value={qrLink(ticket.uuid)} aria-label="Link of this QR code" data-testid="qr-link" onFocus={(e) => e.currentTarget.select()} />
      )}
      {error && (
        <p class="form-error" role="alert">
          {error}{' '}
          <button class="ghost small" type="button" onClick={() => setRound((r) => r + 1)}>
            Try again
          </button>
        </p>
      )}
      <button class="ghost" type="button" data-testid="qr-cancel" onClick={props.onCancel}>
        Log in with a password instead
      </button>
    </div>
  );
}

/** An error line of a form, or nothing when `text` is empty. */
function FormError(props: { text: string }) {
  return props.text ? (
    <p class="form-error" role="alert">
      {props.text}
    </p>
  ) : null;
}

/** Camera frames are looked at this often for a QR code, in ms (a phone's camera gives 30 a second; 4 find one fast enough). */
const SCAN_EVERY_MS = 250;

/** A QR reader over the camera: BarcodeDetector where the browser has one, else jsQR on canvas frames. */
async function qrReader(): Promise<(video: HTMLVideoElement) => Promise<string | undefined>> {
  const Detector = (globalThis as { BarcodeDetector?: new (o: { formats: string[] }) => { detect(s: CanvasImageSource): Promise<{ rawValue: string }[]> } })
    .BarcodeDetector;
  if (Detector) {
    const detector = new Detector({ formats: ['qr_code'] });
    return async (video) => (await detector.detect(video))[0]?.rawValue;
  }
  const { default: jsQR } = await import('jsqr');
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  return async (video) => {
    if (!video.videoWidth) return undefined;
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    ctx.drawImage(video, 0, 0);
    const frame = ctx.getImageData(0, 0, canvas.width, canvas.height);
    return jsQR(frame.data, frame.width, frame.height)?.data;
  };
}

/** Shows the camera and resolves `onFound` with the first QR code's text; stops the camera when unmounted. */
function CameraScanner(props: { onFound: (text: string) => void; onError: (message: string) => void }) {
  const video = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    let stream: MediaStream | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let isStopped = false;
    void (async () => {
      try {
        stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
        if (isStopped) return stream.getTracks().forEach((t) => t.stop());
        video.current!.srcObject = stream;
        await video.current!.play();
        const read = await qrReader();
        const look = async () => {
          if (isStopped) return;
          const text = await read(video.current!).catch(() => undefined);
          if (text) props.onFound(text);
          else timer = setTimeout(() => void look(), SCAN_EVERY_MS);
        };
        void look();
      } catch (err) {
        if (!isStopped) props.onError(`Camera unavailable (${(err as Error).name ?? 'error'}): paste the code or its link instead.`);
      }
    })();
    return () => {
      isStopped = true;
      clearTimeout(timer);
      stream?.getTracks().forEach((t) => t.stop());
    };
  }, []);
  return <video ref={video} class="qr-camera" muted playsInline data-testid="qr-camera" />;
}

/**
 * "Confirm a login": find the uuid (pasted, scanned, or from the page's `#qr=` link), show which device asks (the
 * scan), and log it in only when the user presses Confirm.
 */
export function QrConfirmDialog(props: { initialUuid?: string; onClose: () => void }) {
  const model = useModel();
  const [asking, setAsking] = useState<{ uuid: string; device: QrAskingDevice }>();
  const [isCamera, setCamera] = useState(false);
  const [isBusy, setBusy] = useState(false);
  const [isDone, setDone] = useState(false);
  const [error, setError] = useState('');

  async function scan(text: string) {
    setCamera(false);
    const uuid = qrUuidOf(text);
    if (!uuid) return setError('That is not a Synchat login code or link.');
    setError('');
    setBusy(true);
    try {
      setAsking({ uuid, device: await model.scanQrLogin(uuid) });
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  async function confirm() {
    setBusy(true);
    try {
      await model.confirmQrLogin(asking!.uuid);
      setDone(true);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  useEffect(() => {
    if (props.initialUuid) void scan(props.initialUuid);
  }, []);

  function onSubmit(e: Event) {
    e.preventDefault();
    void scan(String(new FormData(e.currentTarget as HTMLFormElement).get('code') ?? ''));
  }

  return (
    <Modal title="Confirm a login" onClose={props.onClose}>
      {isDone ? (
        <div class="qr-confirm" data-testid="qr-confirmed">
          <p>
            <strong>{asking!.device.deviceName}</strong> is now logged in as you. It is in your device list, where you can log it out.
          </p>
          <button class="primary" type="button" onClick={props.onClose}>
            Done
          </button>
        </div>
      ) : asking ? (
        <div class="qr-confirm" data-testid="qr-asking">
          <p>
            Log in <strong data-testid="qr-asking-device">{asking.device.deviceName}</strong> as <strong>{model.nameOf(model.me)}</strong>?
          </p>
          <p class="muted small">
            It asked at {timeOfDay(asking.device.createTime)}. Confirm only a device in front of you: whoever holds it reads your chats.
          </p>
          <FormError text={error} />
          <div class="row-between">
            <button class="ghost" type="button" data-testid="qr-deny" onClick={props.onClose}>
              Cancel
            </button>
            <button class="primary" type="button" data-testid="qr-confirm" disabled={isBusy} onClick={() => void confirm()}>
              {isBusy ? <span class="spinner" aria-label="Working" /> : 'Confirm'}
            </button>
          </div>
        </div>
      ) : (
        <form class="qr-confirm" onSubmit={onSubmit}>
          <p class="muted">Scan the QR code shown on the device that wants to log in, or paste its link.</p>
          {isCamera && <CameraScanner onFound={(text) => void scan(text)} onError={(m) => (setCamera(false), setError(m))} />}
          <label>
            Code or link
            <input name="code" data-testid="qr-paste" autocomplete="off" spellcheck={false} placeholder="https://…/#qr=…" />
          </label>
          <FormError text={error} />
          <div class="row-between">
            {'mediaDevices' in navigator ? (
              <button class="ghost" type="button" data-testid="qr-use-camera" onClick={() => (setError(''), setCamera(!isCamera))}>
                {isCamera ? 'Stop camera' : 'Use camera'}
              </button>
            ) : (
              <span />
            )}
            <button class="primary" type="submit" data-testid="qr-paste-submit" disabled={isBusy}>
              {isBusy ? <span class="spinner" aria-label="Working" /> : 'Continue'}
            </button>
          </div>
        </form>
      )}
    </Modal>
  );
}
