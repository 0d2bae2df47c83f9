// The capacity model lives in src/ops/capacity-model.ts, so that the server can run the same arithmetic on its
// live costs without importing from bench/; the load tool and its tests keep this path.
export * from '../../src/ops/capacity-model.ts';
