import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BACKING_LOG_NAME,
  type EngineV1,
  type Logger,
  type PluginV1,
  type RunStatus,
  type TaskDefinition,
  type TaskHookName,
  type TaskPluginV1,
  Worker,
  type WorkerExit,
  type WorkerOptions,
} from '@tcw/core';
import { type FakeArtifact, FakeQueue } from './fake-queue.js';
import { createMockEngine } from './mock-engine.js';

export interface TestWorkerOptions {
  /** Default: the mock engine with every capability. */
  engine?: EngineV1;
  plugins?: PluginV1[];
  capacity?: number;
  /** Default: a new FakeQueue with a 20 ms long-poll. */
  queue?: FakeQueue;
  logger?: Logger;
  /** Any other worker option (timeouts, grace periods). */
  worker?: Partial<Omit<WorkerOptions, 'queue' | 'engine' | 'plugins' | 'capacity'>>;
}

/** A task's outcome as a test sees it. */
export interface TaskResult {
  taskId: string;
  runId: number;
  status: RunStatus;
  /** `completed`, `failed`, or `exception/<reason>`. */
  resolution: string;
  /** The uploaded task log (`public/logs/live_backing.log`), or '' when none was uploaded. */
  log: string;
  artifacts: Map<string, FakeArtifact>;
}

export interface TestWorker {
  readonly worker: Worker;
  readonly queue: FakeQueue;
  readonly engine: EngineV1;
  /** Adds a task for this worker; returns its taskId. */
  submit(payload: Record<string, unknown>, overrides?: Partial<TaskDefinition>): string;
  /** Waits for the run to resolve, then collects its log and artifacts. */
  result(taskId: string, runId?: number): Promise<TaskResult>;
  /** `submit` then `result`. */
  run(payload: Record<string, unknown>, overrides?: Partial<TaskDefinition>): Promise<TaskResult>;
  /** Stops the worker (graceful by default) and waits for its loop to end. */
  stop(mode?: 'graceful' | 'now'): Promise<WorkerExit>;
  /** Resolves when the worker's loop ends by itself (a fatal error, a plugin stopping it). */
  readonly exited: Promise<WorkerExit>;
}

const identity = { taskQueueId: 'tcw-test/fake', workerGroup: 'test-group', workerId: 'test-worker' };

/**
 * A real `Worker` in-process, against a `FakeQueue` and (by default) the mock engine: for plugin authors and
 * the worker's own tests.
 */
export async function startTestWorker(options: TestWorkerOptions = {}): Promise<TestWorker> {
  const queue = options.queue ?? new FakeQueue({ longPollMs: 20 });
  const engine = options.engine ?? createMockEngine();
  const workDir = await mkdtemp(join(tmpdir(), 'tcw-test-worker-'));
  const worker = new Worker({
    queue,
    engine,
    plugins: options.plugins ?? [],
    identity,
    capacity: options.capacity ?? 1,
    workDir,
    claimPauseMs: 5,
    cancelPollMs: 50,
    abortGraceMs: 200,
    ...(options.logger ? { logger: options.logger } : {}),
    ...options.worker,
  });
  await worker.start();
  const exited = worker.run().finally(() => rm(workDir, { recursive: true, force: true }));
  exited.catch(() => {});

  const result = async (taskId: string, runId = 0): Promise<TaskResult> => {
    const status = await queue.waitForResolution(taskId, runId);
    // the log upload precedes the resolution, but the worker may still be disposing: wait for it to settle
    await new Promise((r) => setImmediate(r));
    const artifacts = queue.artifacts(taskId, runId);
    const log = artifacts.get(BACKING_LOG_NAME)?.data?.toString('utf8') ?? '';
    return {
      taskId,
      runId,
      status,
      resolution: status.state === 'exception' ? `exception/${status.reasonResolved}` : status.state,
      log,
      artifacts,
    };
  };
  const submit = (payload: Record<string, unknown>, overrides: Partial<TaskDefinition> = {}) =>
    queue.createTask(payload, { taskQueueId: identity.taskQueueId, ...overrides });
  return {
    worker,
    queue,
    engine,
    submit,
    result,
    run: (payload, overrides) => result(submit(payload, overrides)),
    async stop(mode = 'graceful') {
      if (mode === 'now') worker.stopNow('test stop');
      else worker.stopGracefully('test stop');
      const exit = await exited;
      await queue.close();
      return exit;
    },
    exited,
  };
}

/** A hook call recorded by `traceHooks`. */
export interface HookCall {
  plugin: string;
  hook: TaskHookName | 'taskPlugin';
  taskId: string;
}

/**
 * Wraps a plugin so every task hook it runs is recorded in `calls` (in the order they ran), without changing
 * its behaviour.
 */
export function traceHooks(plugin: PluginV1, calls: HookCall[]): PluginV1 {
  const hooks: TaskHookName[] = [
    'prepare',
    'buildSandbox',
    'started',
    'stopped',
    'finished',
    'exception',
    'dispose',
  ];
  return {
    ...plugin,
    name: plugin.name,
    specificationVersion: 'v1',
    async taskPlugin(context) {
      calls.push({ plugin: plugin.name, hook: 'taskPlugin', taskId: context.task.taskId });
      const inner = (await plugin.taskPlugin?.(context)) ?? {};
      const traced: TaskPluginV1 = {};
      for (const hook of hooks) {
        const fn = inner[hook] as ((ctx: unknown) => unknown) | undefined;
        (traced as Record<string, unknown>)[hook] = async (ctx: unknown) => {
          calls.push({ plugin: plugin.name, hook, taskId: context.task.taskId });
          return fn ? await fn.call(inner, ctx) : hook === 'stopped' ? undefined : undefined;
        };
      }
      return traced;
    },
  };
}

export interface PluginTaskOptions extends TestWorkerOptions {
  /** The plugin(s) under test, in order. */
  plugins: PluginV1[];
  /** The whole payload (the mock engine's `mock` key and the plugins' keys). */
  payload: Record<string, unknown>;
  task?: Partial<TaskDefinition>;
}

/** The plugin harness: runs one task with the given plugins on the mock engine and returns its outcome. */
export async function runPluginTask(
  options: PluginTaskOptions,
): Promise<TaskResult & { hooks: HookCall[]; exit: WorkerExit }> {
  const hooks: HookCall[] = [];
  const tw = await startTestWorker({ ...options, plugins: options.plugins.map((p) => traceHooks(p, hooks)) });
  try {
    const result = await tw.run(options.payload, options.task);
    const exit = await tw.stop();
    return { ...result, hooks, exit };
  } catch (error) {
    await tw.stop('now');
    throw error;
  }
}
