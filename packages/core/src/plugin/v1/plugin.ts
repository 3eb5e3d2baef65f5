import type { Capability, EngineCapabilities } from '../../engine/v1/capabilities.js';
import type { Logger } from '../../logger.js';
import type { PayloadSchemaPart } from '../../schema/payload-schema.js';
import type { WorkerIdentity } from '../../task.js';
import type { WorkerEvents } from '../../worker/worker-events.js';
import type { TaskHookContext, TaskPluginV1 } from './task-plugin.js';

/** How a plugin stops the worker. */
export interface StopOptions {
  /**
   * The stop is a failure (stoponerror, watchdog): the worker's exit reports it (`WorkerExit.fatal`; the `tcw`
   * process exits 69), so a supervisor with `Restart=on-failure` restarts it. Default false (a planned stop).
   */
  fatal?: boolean;
}

/** Stop the worker: `gracefully` lets running tasks finish, `now` aborts them (`worker-shutdown`). */
export interface WorkerLifecycle {
  stopGracefully(reason: string, options?: StopOptions): void;
  stopNow(reason: string, options?: StopOptions): void;
  readonly stopping: boolean;
  /** Worker events: progress, task resolution, idleness, internal errors (watchdog, reboot, stoponerror). */
  readonly events: WorkerEvents;
}

/** What a plugin gets once, when the worker starts. */
export interface PluginInitContext {
  logger: Logger;
  worker: WorkerIdentity;
  rootUrl: string;
  engine: { name: string; capabilities: EngineCapabilities };
  lifecycle: WorkerLifecycle;
  /** A folder of the plugin's own that survives restarts. */
  workDir: string;
  /** The version of @tcw/core running the worker. */
  coreVersion: string;
}

/** What `payloadSchema` may look at. */
export interface PayloadSchemaContext {
  engine: { name: string; capabilities: EngineCapabilities };
}

/**
 * A plugin adds an engine-independent feature. One instance lives as long as the worker and makes a
 * `TaskPluginV1` per task. Everything but `specificationVersion` and `name` is optional, so adding a hook never
 * breaks an existing plugin.
 */
export interface PluginV1 {
  readonly specificationVersion: 'v1';
  readonly name: string;
  /** Tier within the configured order: `pre` plugins first, then the rest, then `post`. */
  readonly enforce?: 'pre' | 'post';
  /**
   * Engine capabilities this plugin needs. When the engine lacks one, the plugin's payload keys do not exist on
   * this worker (and its task plugin is still created, so it can work without them).
   */
  readonly requires?: readonly Capability[];
  /** The @tcw/core versions this plugin works with (`^0.1.0`); checked at startup. */
  readonly coreRange?: string;
  /**
   * The plugin's top-level payload keys. May throw `FeatureNotSupportedError` when the engine lacks something:
   * its keys are then left out of the composed schema.
   */
  payloadSchema?(context: PayloadSchemaContext): PayloadSchemaPart | undefined;
  /** At worker start, after the engine's `init`. A throw stops the worker from starting. */
  init?(context: PluginInitContext): Promise<void> | void;
  /** A task plugin for one task, or undefined when the plugin has nothing to do for it. */
  taskPlugin?(context: TaskHookContext): Promise<TaskPluginV1 | undefined> | TaskPluginV1 | undefined;
  /** At worker stop, in reverse order. */
  dispose?(): Promise<void> | void;
}
