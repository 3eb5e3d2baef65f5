// The engine conformance suite, run against the mock engine: once with every capability, once with none (the
// suite then checks that the unsupported methods throw FeatureNotSupportedError).
import { createMockEngine, describeEngineConformance } from '../src/index.js';

const payloads = {
  exit: (code: number) => ({ mock: { exitCode: code } }),
  print: (text: string) => ({ mock: { log: text } }),
  sleep: (ms: number) => ({ mock: { delayMs: ms } }),
  printEnv: (name: string) => ({ mock: { env: [name] } }),
  writeFiles: (files: Record<string, string>) => ({ mock: { files } }),
  readVolume: (mountPoint: string, file: string) => ({ mock: { readVolume: { mountPoint, file } } }),
  fetchProxy: (name: string) => ({ mock: { fetchProxy: { name, path: '/ping' } } }),
};

describeEngineConformance({
  name: 'mock (all capabilities)',
  createEngine: () => createMockEngine(),
  payloads,
});

describeEngineConformance({
  name: 'mock (no capabilities)',
  createEngine: () =>
    createMockEngine({
      capabilities: {
        env: false,
        volumes: false,
        proxies: false,
        files: false,
        extract: false,
        gracefulAbort: false,
      },
    }),
  payloads,
});
