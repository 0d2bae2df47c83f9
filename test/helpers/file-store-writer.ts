// Child process for the FileStore crash test (test/sdk/stores.test.ts): saves ever longer outboxes to FILE, back
// to back, until killed. Before save n it prints "saving n", after it "saved n": the outbox of save n holds
// BASE + n items of about 2 KiB each (a few MB per save, so a kill lands inside one).
import { FileStore } from '../../src/sdk/node/index.ts';

const { FILE, BASE } = process.env as Record<string, string>;
const store = new FileStore(FILE!);
const padding = 'x'.repeat(2048);
for (let n = 1; ; n++) {
  // stdout is a pipe: writes to it are synchronous on Linux, so the parent sees each line before the next step.
  process.stdout.write(`saving ${n}\n`);
  await store.saveOutbox(
    Array.from({ length: Number(BASE) + n }, (_, k) => ({ clientMsgId: `m${k}`, to: 'bob', type: 1, content: padding, state: 'queued' as const, attempts: 0, queuedAt: 0 })),
  );
  process.stdout.write(`saved ${n}\n`);
}
