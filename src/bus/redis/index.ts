// docs/architecture.md "Between nodes (Redis)": the bus, shared throttles, node directory and node reports over Redis.
export { RedisBus, type RedisBusOptions } from './redis-bus.ts';
export { RedisRateCounters, type RedisRateCountersOptions } from './redis-counters.ts';
export { RedisNodeReports, type RedisNodeReportsOptions } from './redis-node-reports.ts';
export { RedisDirectory, type DirectoryGateway, type DirectoryNode, type RedisDirectoryOptions } from './redis-directory.ts';
export { closeRedis, openRedis, REDIS_LINK_DEFAULTS, type OpenRedisOptions, type RedisLogger } from './redis-connection.ts';
