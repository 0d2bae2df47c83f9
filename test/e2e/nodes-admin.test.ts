// The admin dashboard's data over two nodes on one PostgreSQL database and one Redis (docs/operations.md
// "Dashboard"): each node publishes its report once a second, so `/api/admin/stats` on either lists both nodes'
// snapshots, its own first. Skipped without PostgreSQL and Redis, failing under CI=true.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AdminStats } from '../../src/ops/admin-stats.ts';
import { nodesForSuite } from '../helpers/nodes.ts';
import { requirePostgres, requireRedis } from '../helpers/services.ts';
import { waitUntil } from '../helpers/wait.ts';

const skip = (await requirePostgres()) ?? (await requireRedis());
const TOKEN = 'nodes-admin-test-token-0123456789';

async function stats(url: string): Promise<AdminStats> {
  const res = await fetch(`${url}/api/admin/stats`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const body = (await res.json()) as AdminStats;
  assert.equal(body.ret, 0, JSON.stringify(body));
  return body;
}

describe('admin stats over several nodes', { skip }, () => {
  // Node 1 runs a gateway process: its report covers its core and its gateway.
  const cluster = nodesForSuite(2, [0, 1], { SYNCHAT_ADMIN_TOKEN: TOKEN });
  const node = (i: number) => cluster().nodes[i]!;

  it("lists every live node's snapshot on each node, its own first", async () => {
    let a: AdminStats | undefined;
    let b: AdminStats | undefined;
    await waitUntil(
      async () => {
        [a, b] = [await stats(node(0).url), await stats(node(1).url)];
        return a.nodes.length === 2 && b.nodes.length === 2;
      },
      'each node lists both',
      20_000,
      200,
    );
    assert.equal(a!.nodes[0]!.snapshot.nodeId, a!.nodeId);
    assert.equal(b!.nodes[0]!.snapshot.nodeId, b!.nodeId);
    assert.notEqual(a!.nodeId, b!.nodeId);
    assert.equal(a!.nodes[1]!.snapshot.nodeId, b!.nodeId, "node 0 lists node 1's report");
    assert.equal(b!.nodes[1]!.snapshot.nodeId, a!.nodeId, "node 1 lists node 0's report");
    for (const s of [a!, b!]) for (const n of s.nodes) assert.equal(n.store, 'postgres');
    // Node 1's report, read on node 0: its core and its gateway process.
    assert.deepEqual(a!.nodes[1]!.snapshot.processes.map((p) => p.role).sort(), ['core', 'gateway']);
    assert.deepEqual(a!.nodes[0]!.snapshot.processes.map((p) => p.role), ['single']);
  });
});
