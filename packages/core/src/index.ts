// @tcw/core — contracts (engine, plugin), payload schema composition, the task runner and the worker loop.

export {
  type ArtifactCommon,
  ArtifactUploader,
  type ArtifactUploaderOptions,
  type UploadedArtifact,
} from './artifacts/artifact-uploader.js';
export { contentTypeFor, isCompressible } from './artifacts/content-type.js';
export { type Capability, type EngineCapabilities, NO_CAPABILITIES } from './engine/v1/capabilities.js';
export type { EngineInitContext, EngineV1, SandboxOptions } from './engine/v1/engine.js';
export type { ExtractedFile, ResultSetV1 } from './engine/v1/result-set.js';
export type { AbortOptions, SandboxV1 } from './engine/v1/sandbox.js';
export type { ProxySpec, SandboxBuilderV1, VolumeSpec } from './engine/v1/sandbox-builder.js';
export * from './errors/index.js';
export {
  secretForms,
  TaskLog,
  type TaskLogOptions,
  type TaskLogReader,
  type TaskLogWriter,
} from './log/task-log.js';
export { type Logger, silentLogger } from './logger.js';
export type {
  PayloadSchemaContext,
  PluginInitContext,
  PluginV1,
  StopOptions,
  WorkerLifecycle,
} from './plugin/v1/plugin.js';
export {
  BACKING_LOG_NAME,
  type TaskControl,
  type TaskHookContext,
  type TaskHookName,
  type TaskPluginV1,
} from './plugin/v1/task-plugin.js';
export {
  assertCompatible,
  defineEngine,
  definePlugin,
  type EngineProviderV1,
  type PluginProviderV1,
} from './provider.js';
export type {
  CreateArtifactRequest,
  CreateUploadResponse,
  ErrorArtifactReason,
  ObjectArtifactResponse,
  QueuePort,
  ReclaimResult,
  UploadMethodProposal,
} from './queue/queue-port.js';
export {
  createTaskclusterQueue,
  TaskclusterQueue,
  type TaskclusterQueueOptions,
} from './queue/taskcluster-queue.js';
export { type HookRunnerOptions, orderPlugins } from './runner/hook-runner.js';
export { TaskRun, type TaskRunOptions, type TaskRunOutcome } from './runner/task-run.js';
export { createAjv, type JSONSchema, pointerToPath, type SchemaIssue, toIssues } from './schema/ajv.js';
export {
  type ComposedPayloadSchema,
  composePayloadSchema,
  type PayloadSchemaPart,
  type SchemaContributor,
} from './schema/payload-schema.js';
export type {
  Claim,
  Credentials,
  RunState,
  RunStatus,
  TaskDefinition,
  TaskInfo,
  TaskStatus,
  WorkerIdentity,
} from './task.js';
export { createLimiter, type Limiter } from './util/limiter.js';
export { type InsideResult, resolveInside, type WalkEntry, walkFiles } from './util/paths.js';
export { type RemoveFs, removeAllSync, removeTree } from './util/remove-tree.js';
export { backoff, sleep } from './util/sleep.js';
export { CORE_VERSION, satisfies } from './version.js';
export { composeWorkerSchema } from './worker/compose.js';
export { Worker, type WorkerExit, type WorkerOptions } from './worker/worker.js';
export { type WorkerEventMap, WorkerEvents } from './worker/worker-events.js';
