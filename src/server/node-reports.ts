/**
 * What the admin dashboard reads (`GET /api/admin/stats`, docs/operations.md "Dashboard"): this node's report —
 * its snapshot (src/ops), its machine and its store — and, with Redis between nodes, every other live node's,
 * which each node publishes once a second (src/bus/redis/redis-node-reports.ts). Runs in the core process; a
 * gateway process asks it over IPC.
 */
import { availableParallelism, totalmem } from 'node:os';
import { Ajv } from 'ajv';
import type { RedisNodeReports } from '../bus/redis/index.ts';
import { MAX_REPORT_BYTES, type NodeReport } from '../ops/admin-stats.ts';
import type { NodeSnapshot } from '../ops/snapshot.ts';
import { RET } from '../protocol/index.ts';
import type { Logger, Reply } from '../service/index.ts';

/** Options of {@link NodeReports}. */
export interface NodeReportsOptions {
  nodeId: string;
  store: NodeReport['store'];
  /** The reports of the other nodes (with Redis); absent: this node alone. */
  shared?: RedisNodeReports;
  logger: Logger;
}

const NUMBER = { type: 'number' } as const;

/**
 * The shape a report read from another node must have before the page is given it (another version may write
 * other fields: those are kept; a missing one drops the report).
 */
const REPORT_SCHEMA = {
  type: 'object',
  required: ['snapshot', 'machine', 'store'],
  properties: {
    store: { enum: ['sqlite', 'postgres'] },
    machine: { type: 'object', required: ['cores', 'memBytes'], properties: { cores: NUMBER, memBytes: NUMBER } },
    snapshot: {
      type: 'object',
      required: ['nodeId', 'at', 'startedAt', 'isDraining', 'processes', 'usersOnline', 'totals', 'latencyMs', 'heartbeats'],
      properties: {
        nodeId: { type: 'string' },
        at: NUMBER,
        startedAt: NUMBER,
        isDraining: { type: 'boolean' },
        usersOnline: NUMBER,
        processes: {
          type: 'array',
          maxItems: 256,
          items: {
            type: 'object',
            required: ['pid', 'role', 'rssBytes', 'heapUsedBytes', 'eventLoopDelayP99Ms', 'cpuSeconds', 'connections', 'parkedPolls', 'outboundBytes'],
            properties: {
              pid: NUMBER,
              role: { type: 'string' },
              rssBytes: NUMBER,
              heapUsedBytes: NUMBER,
              eventLoopDelayP99Ms: NUMBER,
              cpuSeconds: NUMBER,
              connections: { type: 'object', required: ['tcp', 'ws'], properties: { tcp: NUMBER, ws: NUMBER } },
              parkedPolls: NUMBER,
              outboundBytes: NUMBER,
            },
          },
        },
        totals: { type: 'object', required: ['sends', 'appends', 'deliveries', 'batches'], additionalProperties: NUMBER },
        latencyMs: { type: 'object', required: ['sendToCommitP50', 'sendToCommitP99', 'commitToDeliveryP99', 'fsyncP99'], additionalProperties: NUMBER },
        heartbeats: { type: 'object', additionalProperties: NUMBER },
      },
    },
  },
} as const;

const isReport = new Ajv({ allErrors: false }).compile(REPORT_SCHEMA);

/** This node's report and the others', for the dashboard. */
export class NodeReports {
  readonly #o: NodeReportsOptions;
  /** This node's snapshot over all its processes; set by {@link NodeReports.start}. */
  #snapshot: (() => Promise<NodeSnapshot>) | undefined;
  readonly #machine = { cores: availableParallelism(), memBytes: totalmem() };
  #isOverBoundLogged = false;

  constructor(options: NodeReportsOptions) {
    this.#o = options;
  }

  /**
   * Takes the node's snapshot source (known once its processes listen) and, with Redis, starts publishing this
   * node's report once a second; the Redis adapter's owner stops it. Never throws.
   */
  async start(snapshot: () => Promise<NodeSnapshot>): Promise<void> {
    this.#snapshot = snapshot;
    await this.#o.shared?.start(this.#o.nodeId, () => this.#own());
  }

  /** The answer of `GET /api/admin/stats` (src/ops/admin-stats.ts `AdminStats`): this node first, then the others. */
  async stats(): Promise<Reply> {
    let own: string;
    try {
      own = await this.#own();
    } catch (err) {
      this.#o.logger.error({ err }, 'node snapshot failed');
      return { ret: RET.SERVER_ERROR, body: JSON.stringify({ ret: RET.SERVER_ERROR, errMsg: 'server error' }) };
    }
    const others = (this.#o.shared?.others() ?? []).filter((text) => {
      try {
        return isReport(JSON.parse(text));
      } catch {
        return false;
      }
    });
    return { ret: RET.OK, body: `{"ret":0,"nodeId":${JSON.stringify(this.#o.nodeId)},"nodes":[${[own, ...others].join(',')}]}` };
  }

  async #own(): Promise<string> {
    if (!this.#snapshot) throw new Error('the node is still starting');
    const report: NodeReport = { snapshot: await this.#snapshot(), machine: this.#machine, store: this.#o.store };
    const text = JSON.stringify(report);
    const bytes = Buffer.byteLength(text);
    if (bytes > MAX_REPORT_BYTES && !this.#isOverBoundLogged) {
      this.#isOverBoundLogged = true;
      this.#o.logger.warn({ bytes, maxBytes: MAX_REPORT_BYTES }, 'node report over its bound: not published to the other nodes');
    }
    return text;
  }
}
