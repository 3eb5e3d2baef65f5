import type { ArtifactUploader } from '../../artifacts/artifact-uploader.js';
import type { TaskLogWriter } from '../../log/task-log.js';
import type { Logger } from '../../logger.js';
import type { PayloadSchemaPart } from '../../schema/payload-schema.js';
import type { Credentials, TaskInfo, WorkerIdentity } from '../../task.js';
import type { EngineCapabilities } from './capabilities.js';
import type { SandboxBuilderV1 } from './sandbox-builder.js';

/** What an engine gets once, at worker start. */
export interface EngineInitContext {
  logger: Logger;
  worker: WorkerIdentity;
  /** A folder the engine may use for its own files (task directories, spools); it survives restarts. */
  workDir: string;
}

/** What an engine gets for each task. */
export interface SandboxOptions {
  task: TaskInfo;
  /** The engine's own top-level keys of the payload, already validated. */
  payload: Record<string, unknown>;
  /** Where the task's output goes. */
  log: TaskLogWriter;
  /** Aborted when the task is aborted (cancel, shutdown); long preparations (an image pull) should honour it. */
  signal: AbortSignal;
  logger: Logger;
  /** The worker's artifact upload path (the script engine uploads `./artifacts/` through it). */
  artifacts: ArtifactUploader;
  /**
   * The run's current Taskcluster credentials (temporary, scoped to the task), for engines that fetch from the
   * queue on the task's behalf (a docker image from another task's artifact, say). Absent in older runners.
   */
  credentials?: () => Credentials;
}

/**
 * An engine provides the sandbox in which tasks run (a process tree, a container, a VM). One instance lives as
 * long as the worker. Lifecycle per task: `newSandboxBuilder` → `SandboxBuilder.start()` → `Sandbox.wait()` →
 * `ResultSet.dispose()`, each phase its own type.
 */
export interface EngineV1 {
  readonly specificationVersion: 'v1';
  readonly name: string;
  readonly capabilities: EngineCapabilities;
  /** The engine's top-level payload keys (e.g. `image`, `command`). */
  payloadSchema(): PayloadSchemaPart;
  /** Checks the environment (is dockerd reachable?) and cleans up after a crashed predecessor. */
  init?(context: EngineInitContext): Promise<void>;
  newSandboxBuilder(options: SandboxOptions): Promise<SandboxBuilderV1>;
  dispose?(): Promise<void>;
}
