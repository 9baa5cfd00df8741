import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'src/app/generated/', '.stack/', '.cache/', 'scratch/', 'coverage/', 'dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // The data flows source → events → sink → lake → reports → ops: ops and the CLI read the pipeline,
    // never the other way round. The pipeline reports through interfaces ops implements
    // (connection-monitor.ts, source/source-observer.ts, sink/sink-observer.ts). Cycles: `npm run lint:imports`.
    files: ['src/source/**', 'src/events/**', 'src/sink/**', 'src/lake/**', 'src/reports/**', 'src/config/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/ops/*', '**/ops/**', '**/cli/*', '**/cli/**'],
              message: 'the pipeline must not import ops or the CLI: report through an observer interface that ops implements',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
