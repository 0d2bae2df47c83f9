// Operations (docs/operations.md "Metrics"): a process's Prometheus metrics, the node's sum of them, its snapshot.
export { ProcessMetrics, type CoreSources, type GatewaySources, type ProcessRole } from './metrics.ts';
export { GatewayOps, NodeMetrics, nodeLabel, type NodeInfo, type NodeOps, type OpsChannel } from './node-metrics.ts';
export type { NodeSnapshot, ProcessSnapshot } from './snapshot.ts';
