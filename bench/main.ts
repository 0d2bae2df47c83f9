/**
 * `npm run bench -- <scenario> [options]`: Synchat's load tool. Each scenario is a module in bench/scenarios/
 * exporting `run(args)`; this file only dispatches. Results are printed and, with `--json FILE`, written.
 */
const SCENARIOS: Record<string, { describe: string; load: () => Promise<{ run(argv: string[]): Promise<void> }> }> = {
  'http-sends': {
    describe: 'committed sends per second over HTTP, group commit on vs off (spawns its own servers)',
    load: () => import('./scenarios/http-sends.ts'),
  },
  'longpoll-memory': {
    describe: 'server memory of N parked synccheck long-polls (spawns its own server)',
    load: () => import('./scenarios/longpoll-memory.ts'),
  },
  idle: {
    describe: 'N authenticated idle connections: connect+AUTH rate, server and kernel memory per connection',
    load: () => import('./scenarios/idle.ts'),
  },
  direct: {
    describe: 'P pairs chatting at a stepped open-loop rate: max sustainable durable msgs/s, p99 at half of it',
    load: () => import('./scenarios/direct.ts'),
  },
  group: {
    describe: 'groups of 50 and 500 members: max group deliveries/s at p99 ≤ limit',
    load: () => import('./scenarios/group.ts'),
  },
  storm: {
    describe: 'N clients dropped at once reconnect and resync: time until all are current, peak memory',
    load: () => import('./scenarios/storm.ts'),
  },
  catchup: {
    describe: 'a device offline while 100k entries arrive: time and bytes to resync',
    load: () => import('./scenarios/catchup.ts'),
  },
  'conn-memory': {
    describe: 'process memory per idle authenticated TCP/WS connection after a full GC, per gateway (spawns its own cluster)',
    load: () => import('./scenarios/conn-memory.ts'),
  },
  'media-upload': {
    describe: 'upload throughput of a 50 MiB file with 1, 4 and 8 chunks in flight (spawns its own servers)',
    load: () => import('./scenarios/media-upload.ts'),
  },
  passwords: {
    describe: 'scrypt cost log2(N) 14..17: one hash on one thread, and logins/s and per core-second of a server at each cost',
    load: () => import('./scenarios/passwords.ts'),
  },
  mixed: {
    describe: 'a realistic day compressed: 1% of users sending per minute, 30% of 1.6 devices/user online, groups',
    load: () => import('./scenarios/mixed.ts'),
  },
};

async function main(): Promise<void> {
  const [name, ...rest] = process.argv.slice(2);
  if (!name || !SCENARIOS[name]) {
    console.log('usage: npm run bench -- <scenario> [options]\n\nscenarios:');
    for (const [n, s] of Object.entries(SCENARIOS)) console.log(`  ${n.padEnd(18)} ${s.describe}`);
    process.exit(name ? 2 : 0);
  }
  const mod = await SCENARIOS[name]!.load();
  await mod.run(rest);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
