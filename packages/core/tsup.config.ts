import { defineConfig } from 'tsup';

export default defineConfig({
  // spawner-main is started as its own process: it must sit next to process.js (see src/spawner/client.ts)
  entry: {
    index: 'src/index.ts',
    process: 'src/process.ts',
    'spawner-main': 'src/spawner/spawner-main.ts',
  },
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node22',
});
