// The engine conformance suite against the real script engine (real child processes). The test script
// (fixtures/script.mjs) interprets payload data; the script engine declares no capabilities, so the suite checks
// that env, volumes, proxies and extraction are refused with FeatureNotSupportedError.
import { describeEngineConformance } from '@tcw/testing';
import { engine } from './helpers.js';

describeEngineConformance({
  name: 'script',
  createEngine: engine,
  payloads: {
    exit: (code) => ({ action: 'none', exitCode: code }),
    print: (text) => ({ action: 'print', text }),
    printError: (text) => ({ action: 'print-error', text }),
    sleep: (ms) => ({ action: 'sleep', seconds: ms / 1000 }),
  },
});
