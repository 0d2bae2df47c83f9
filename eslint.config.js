// Layer boundaries from shared/STYLE.md "Boundary rules": arrows point down only.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

const ADAPTERS = ['**/storage/**', '**/bus/**'];
const UPPER = ['**/service/**', '**/transports/**', '**/server/**'];
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
    rules: restrict(['node:*', ...ADAPTERS, ...UPPER, '**/sdk/**'], 'src/core is pure: it imports only src/protocol'),
  },
  {
    files: ['src/service/**'],
    rules: restrict([...ADAPTERS, '**/transports/**', '**/server/**', '**/sdk/**'], 'src/service may import core and protocol only'),
  },
  {
    files: ['src/storage/**'],
    rules: restrict(['**/service/**', '**/transports/**', '**/server/**', '**/bus/**', '**/sdk/**'], 'storage adapters import core types and protocol only'),
  },
  {
    files: ['src/bus/**'],
    rules: restrict(['**/service/**', '**/transports/**', '**/server/**', '**/storage/**', '**/sdk/**'], 'bus adapters import core types and protocol only'),
  },
  {
    files: ['src/transports/**'],
    rules: restrict([...ADAPTERS, '**/server/**', '**/core/**', '**/sdk/**'], 'transports talk to the service API and protocol only'),
  },
  {
    files: ['src/sdk/**', 'web/**', 'bench/**'],
    rules: restrict(SERVER_SIDE, 'clients import src/protocol and src/sdk only'),
  },
);
