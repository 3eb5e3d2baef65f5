import type { ArtifactUploader } from '../../artifacts/artifact-uploader.js';
import type { EngineCapabilities } from '../../engine/v1/capabilities.js';
import type { ResultSetV1 } from '../../engine/v1/result-set.js';
import type { SandboxV1 } from '../../engine/v1/sandbox.js';
import type { SandboxBuilderV1 } from '../../engine/v1/sandbox-builder.js';
import type { AbortReason, ExceptionReason, Resolution } from '../../errors/resolution.js';
import type { TaskLogReader, TaskLogWriter } from '../../log/task-log.js';
import type { Logger } from '../../logger.js';
import type { Credentials, TaskInfo } from '../../task.js';

/** Ways a plugin may end the task it serves. */
export interface TaskControl {
  /**
   * Ends the sandbox (the polite signal, then the kill after `graceMs`) and makes the task resolve `failed`,
   * with `message` written to the log. The normal path continues: `stopped` hooks run, artifacts are uploaded.
   * Used by maxruntime. Resolves once the sandbox is gone.
   */
  fail(message: string, options?: { graceMs?: number }): Promise<void>;
}

/** What every hook of a task plugin gets. */
export interface TaskHookContext {
  readonly task: TaskInfo;
  /** This plugin's own top-level payload keys, validated against its schema. */
  readonly payload: Record<string, unknown>;
  /** Write to the task's log (worker lines are prefixed `[taskcluster <time>]`). */
  readonly log: TaskLogWriter;
  /** Read the task's log from byte 0, following new writes (livelog serves this). */
  readonly taskLog: TaskLogReader;
  /** The worker's log, with `plugin` and `taskId` bound. */
  readonly logger: Logger;
  /** Aborted when the task is aborted (cancel, shutdown) or this hook timed out. */
  readonly signal: AbortSignal;
  /**
   * This hook is still making progress (a file uploaded, a download advanced): its timeout (`worker.hookTimeout`,
   * 30 min by default) starts over. A hook that works longer than the timeout calls it as it goes; uploads through
   * `artifacts` report their progress by themselves.
   */
  progress(): void;
  /** The worker's one artifact upload path. */
  readonly artifacts: ArtifactUploader;
  /** The run's current credentials (they change at every reclaim). */
  credentials(): Credentials;
  readonly control: TaskControl;
  readonly engine: { readonly name: string; readonly capabilities: EngineCapabilities };
}

/** The name under which the task log is uploaded, on every path. */
export const BACKING_LOG_NAME = 'public/logs/live_backing.log';

/**
 * A plugin's per-task instance. Every hook is optional. Order for one task:
 * `prepare` → `buildSandbox` → `started` → `stopped` → `finished`; after a failure at any stage, `exception`
 * replaces what is left; `dispose` always comes last. Forward hooks run in configuration order, `exception` and
 * `dispose` in reverse order. Hooks of one plugin never overlap.
 */
export interface TaskPluginV1 {
  /** Before the sandbox exists: fetch what the task needs, check scopes. */
  prepare?(context: TaskHookContext): Promise<void> | void;
  /** Configure the sandbox (env vars, volumes, proxies, files). */
  buildSandbox?(context: TaskHookContext & { builder: SandboxBuilderV1 }): Promise<void> | void;
  /** The task is running (start timers, publish a live log). */
  started?(context: TaskHookContext & { sandbox: SandboxV1 }): Promise<void> | void;
  /**
   * The task's process has ended: extract and upload files. Return `false` to make the task fail (a missing
   * artifact). Cannot turn a failed task into a success.
   */
  stopped?(
    context: TaskHookContext & { result: ResultSetV1 },
  ): Promise<boolean | undefined> | boolean | undefined;
  /** The log is closed and uploaded (`backingLogUploaded`); `success` is the final verdict. */
  finished?(
    context: TaskHookContext & { success: boolean; backingLogUploaded: boolean },
  ): Promise<void> | void;
  /** Instead of the remaining stages after a failure or an abort. The log is closed and uploaded. */
  exception?(
    context: TaskHookContext & { reason: ExceptionReason | AbortReason; backingLogUploaded: boolean },
  ): Promise<void> | void;
  /** Always last: release everything. `resolution` is what was reported (undefined if the run was gone). */
  dispose?(context: TaskHookContext & { resolution: Resolution | undefined }): Promise<void> | void;
}

export type TaskHookName =
  | 'prepare'
  | 'buildSandbox'
  | 'started'
  | 'stopped'
  | 'finished'
  | 'exception'
  | 'dispose';
