// Wire contract shared by server, SDK and web app; see docs/architecture.md "protocol".
export * from './ret-codes.ts';
export * from './ops.ts';
export * from './entries.ts';
export * from './api.ts';
export * from './frame.ts';
export * from './delta.ts';
export * from './media-chunk.ts';
export * from './answers.ts';
