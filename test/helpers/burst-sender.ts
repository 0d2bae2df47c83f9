// Child process for multi-process tests: sends COUNT messages to TO with SID from BASE, CONCURRENCY at a time,
// and prints one JSON line with the answers.
const { BASE, SID, TO, COUNT, TAG, CONCURRENCY } = process.env as Record<string, string>;
const answers: unknown[] = [];
let next = 0;
async function worker(): Promise<void> {
  while (next < Number(COUNT)) {
    const i = next++;
    const res = await fetch(`${BASE}/api/sendmsg`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${SID}` },
      body: JSON.stringify({ clientMsgId: `${TAG}-${i}`, to: TO, type: 1, content: `${TAG} #${i}` }),
    });
    answers.push(await res.json());
  }
}
await Promise.all(Array.from({ length: Number(CONCURRENCY ?? '8') }, worker));
process.stdout.write(JSON.stringify(answers) + '\n');
