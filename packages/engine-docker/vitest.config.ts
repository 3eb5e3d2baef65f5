import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // one dockerd for every file, and engines remove the leftovers of "their" worker identity on init: run files
    // one after another so one file's init never removes another file's running containers
    fileParallelism: false,
  },
});
