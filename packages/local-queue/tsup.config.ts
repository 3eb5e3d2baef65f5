import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/thread-main.ts'],
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node22',
  // esbuild strips the `node:` prefix for builtins it knows; `node:sqlite` only exists with the prefix.
  removeNodeProtocol: false,
});
