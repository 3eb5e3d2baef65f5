// @tcw/testing — test tools for tcw engines and plugins.
export {
  type ConformancePayloads,
  describeEngineConformance,
  type EngineConformanceSpec,
} from './conformance.js';
export {
  createFakeQueue,
  type FakeArtifact,
  type FakeCall,
  FakeHttpError,
  FakeQueue,
  type FakeQueueOptions,
} from './fake-queue.js';
export {
  createMockEngine,
  type MockEngine,
  type MockEngineOptions,
  type MockPayload,
  type MockSandboxRecord,
} from './mock-engine.js';
export { type RunSandboxOptions, runSandbox, type SandboxRun } from './run-sandbox.js';
export {
  type HookCall,
  type PluginTaskOptions,
  runPluginTask,
  startTestWorker,
  type TaskResult,
  type TestWorker,
  type TestWorkerOptions,
  traceHooks,
} from './test-worker.js';
