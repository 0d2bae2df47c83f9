// Layer boundaries from shared/STYLE.md "Boundary rules": arrows point down only.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

const ADAPTERS = ['**/storage/**', '**/bus/**'];
// Metrics live in src/ops, wired by the composition root: the layers it measures only offer seams (observer hooks,
// stats objects) and never see Prometheus (docs/operations.md "Metrics").
const OPS = ['prom-client'];
const UPPER = ['**/service/**', '**/transports/**', '**/server/**'];
// The browser-safe part of src/ops: the snapshot and report types, the capacity model and the live estimate.
const PURE_OPS = ['src/ops/snapshot.ts', 'src/ops/admin-stats.ts', 'src/ops/capacity-model.ts', 'src/ops/live-capacity.ts'];
const SERVER_SIDE = ['**/server/**', '**/service/**', '**/core/**', '**/storage/**', '**/bus/**', '**/transports/**'];

function restrict(patterns, message) {
  return { 'no-restricted-imports': ['error', { patterns: [{ group: patterns, message }] }] };
}

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'data/**', 'web/dist/**', 'docs/**', '.scratch/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['src/protocol/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ regex: '^(?!\\./)', message: 'src/protocol imports only the JS standard library and itself' }] },
      ],
    },
  },
  {
    files: ['src/core/**'],
    rules: restrict(['node:*', ...ADAPTERS, ...UPPER, ...OPS, '**/sdk/**'], 'src/core is pure: it imports only src/protocol'),
  },
  {
    files: ['src/service/**'],
    rules: restrict([...ADAPTERS, '**/transports/**', '**/server/**', ...OPS, '**/sdk/**'], 'src/service may import core and protocol only'),
  },
  {
    files: ['src/storage/**'],
    rules: restrict(['**/service/**', '**/transports/**', '**/server/**', '**/bus/**', ...OPS, '**/sdk/**'], 'storage adapters import core types and protocol only'),
  },
  {
    files: ['src/bus/**'],
    rules: restrict(['**/service/**', '**/transports/**', '**/server/**', '**/storage/**', ...OPS, '**/sdk/**'], 'bus adapters import core types and protocol only'),
  },
  {
    files: ['src/transports/**'],
    rules: restrict([...ADAPTERS, '**/server/**', '**/core/**', ...OPS, '**/sdk/**'], 'transports talk to the service API and protocol only'),
  },
  {
    files: ['src/ops/**'],
    rules: restrict([...ADAPTERS, '**/transports/**', '**/server/**', '**/sdk/**'], 'src/ops reads the service\'s and the edges\' figures through seams the composition root hands it'),
  },
  {
    // What the admin dashboard (web/) and the load tool (bench/) run of src/ops: plain data and arithmetic that
    // import nothing but each other (docs/architecture.md "Layers").
    files: PURE_OPS,
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ regex: '^(?!\\./)', message: 'the browser-safe part of src/ops imports only itself' }] }],
    },
  },
  {
    files: ['src/sdk/**', 'web/**', 'bench/**'],
    rules: restrict(SERVER_SIDE, 'clients import src/protocol and src/sdk only'),
  },
);
