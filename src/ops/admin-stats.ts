/**
 * The answer of `GET /api/admin/stats`, which the admin dashboard (`/admin`, docs/operations.md "Dashboard") reads
 * once a second: this node's snapshot and, with Redis between nodes, every other live node's latest one (each node
 * publishes its own every second). Types only, shared by the server and the page.
 */
import type { NodeSnapshot } from './snapshot.ts';

/** One node as the dashboard sees it: its snapshot and what its capacity estimate needs to know about it. */
export interface NodeReport {
  snapshot: NodeSnapshot;
  /** Cores and memory of the node's machine (the default node shape of its capacity estimate). */
  machine: { cores: number; memBytes: number };
  /** The node's store: one SQLite writer (a limit of its own) or PostgreSQL (shared by the nodes). */
  store: 'sqlite' | 'postgres';
}

/** `GET /api/admin/stats` with ret 0. */
export interface AdminStats {
  ret: 0;
  /** The node that answered. */
  nodeId: string;
  /** The answering node first, then the others by node id. */
  nodes: NodeReport[];
}

/**
 * Largest published report, in bytes of JSON: a node of 64 processes with a few hundred heartbeat periods stays far
 * below it; a larger one (another version, a fault) is neither published nor read.
 */
export const MAX_REPORT_BYTES = 64 * 1024;
/** Most nodes one answer lists (the others are left out): bounds the answer at 64 × 64 KiB. */
export const MAX_REPORTED_NODES = 64;
