import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ArtifactUploader } from '../artifacts/artifact-uploader.js';
import type { EngineV1 } from '../engine/v1/engine.js';
import type { ResultSetV1 } from '../engine/v1/result-set.js';
import type { SandboxV1 } from '../engine/v1/sandbox.js';
import type { SandboxBuilderV1 } from '../engine/v1/sandbox-builder.js';
import { InternalError } from '../errors/internal-error.js';
import type { AbortReason, ExceptionReason, Resolution } from '../errors/resolution.js';
import { describeResolution, errorOutcome } from '../errors/resolution.js';
import { RunGoneError } from '../errors/run-gone-error.js';
import { TcwError } from '../errors/tcw-error.js';
import { TaskLog } from '../log/task-log.js';
import type { Logger } from '../logger.js';
import type { PluginV1 } from '../plugin/v1/plugin.js';
import { BACKING_LOG_NAME, type TaskHookContext } from '../plugin/v1/task-plugin.js';
import type { QueuePort } from '../queue/queue-port.js';
import type { ComposedPayloadSchema } from '../schema/payload-schema.js';
import type { Claim, Credentials, TaskInfo, WorkerIdentity } from '../task.js';
import type { Limiter } from '../util/limiter.js';
import { removeTree } from '../util/remove-tree.js';
import { backoff, sleep } from '../util/sleep.js';
import { CORE_VERSION } from '../version.js';
import type { WorkerEvents } from '../worker/worker-events.js';
import {
  callHook,
  type HookRunnerOptions,
  type PluginEntry,
  runForward,
  runTeardown,
} from './hook-runner.js';

export interface TaskRunOptions {
  claim: Claim;
  engine: EngineV1;
  /** Enabled plugins, already in hook order (see `orderPlugins`). */
  plugins: readonly PluginV1[];
  schema: ComposedPayloadSchema;
  queue: QueuePort;
  worker: WorkerIdentity;
  logger: Logger;
  events: WorkerEvents;
  /** Where the task log's backing file and upload spools go. */
  workDir: string;
  /** Worker-wide limit on concurrent artifact uploads. */
  uploadLimit?: Limiter;
  /** Values the task log masks as `[secret]` (besides the run's temporary credentials, always masked). */
  logSecrets?: readonly string[];
  /** The task log keeps this many bytes from its start, then only the end of the rest (see `TaskLogOptions`). */
  maxLogBytes?: number;
  /** Per-hook timeout (default 30 min). */
  hookTimeoutMs?: number;
  /** When a slow hook is reported (default 5 s). */
  hookWarnAfterMs?: number;
  /** Time between the polite signal and the kill when the task is aborted (default 10 s). */
  abortGraceMs?: number;
  /** How often the task's status is checked to notice a cancellation (default 5 s; 0 disables). */
  cancelPollMs?: number;
  /** Reclaim when this fraction of the claim's time has passed (default 0.5). */
  reclaimFraction?: number;
}

/** How one task run ended. */
export interface TaskRunOutcome {
  taskId: string;
  runId: number;
  /** What was decided; reported unless `runGone`. */
  resolution: Resolution | undefined;
  /** The queue said the run is over (409, cancelled, deadline, claim expired): nothing was reported. */
  runGone: boolean;
  reported: boolean;
  /** The worker must stop taking work. */
  fatal: boolean;
  /** The error that decided an exception, if any. */
  error?: Error;
  /** Milliseconds spent in each stage, in order (`prepare`, `build`, `start`, `run`, … `dispose`, `cleanup`). */
  timings: Record<string, number>;
}

class AbortedError extends TcwError {
  constructor(readonly reason: AbortReason) {
    super('ERR_TASK_ABORTED', `task aborted: ${reason}`);
  }
}

const KEEP_ALIVE_STOPPED = new Error('the run ended: no more reclaims or status checks');

/**
 * Drives one claimed task through its stages: validate → prepare → build → start → started → wait → stopped →
 * (log closed and uploaded) → finished → resolve, with `exception` replacing what is left after a failure and
 * `dispose` always last. It also keeps the claim alive (reclaims with the fresh credentials) and watches for
 * cancellation. An abort at any stage stops the sandbox, still runs `exception` and `dispose`, and resolves with
 * the right reason — or not at all when the run is gone.
 */
export class TaskRun {
  readonly taskId: string;
  readonly runId: number;
  readonly #o: TaskRunOptions;
  readonly #logger: Logger;
  readonly #abort = new AbortController();
  #abortReason: AbortReason | undefined;
  #failure: string | undefined;
  #logFailure: InternalError | undefined;
  #credentials: Credentials;
  #takenUntil: Date;
  #claimDurationMs: number;
  #sandbox: SandboxV1 | undefined;
  #result: ResultSetV1 | undefined;
  #finished = false;
  #timers = new Set<NodeJS.Timeout>();
  #watchStopped = new AbortController();
  readonly #timings: Record<string, number> = {};
  #cleanedUp: Promise<void> | undefined;
  #lastMark = performance.now();

  /** Ends a stage: records the time since the previous mark under `stage`. */
  #mark(stage: string): void {
    const now = performance.now();
    this.#timings[stage] = Math.round((now - this.#lastMark) * 100) / 100;
    this.#lastMark = now;
  }

  constructor(options: TaskRunOptions) {
    this.#o = options;
    this.taskId = options.claim.taskId;
    this.runId = options.claim.runId;
    this.#credentials = options.claim.credentials;
    this.#takenUntil = options.claim.takenUntil;
    this.#claimDurationMs = Math.max(100, options.claim.takenUntil.getTime() - Date.now());
    this.#logger = options.logger.child({ taskId: this.taskId, runId: this.runId });
  }

  /** The run's current credentials. */
  get credentials(): Credentials {
    return this.#credentials;
  }

  get takenUntil(): Date {
    return this.#takenUntil;
  }

  get abortReason(): AbortReason | undefined {
    return this.#abortReason;
  }

  /**
   * Aborts the task: `canceled` when the run is gone (nothing is reported), `worker-shutdown` when the worker
   * stops now. The first reason wins. Safe at any stage, and more than once.
   */
  abort(reason: AbortReason, message?: string): void {
    if (this.#abortReason || this.#finished) return;
    this.#abortReason = reason;
    this.#logger.info({ reason, message }, 'aborting task');
    this.#abort.abort(new AbortedError(reason));
    if (this.#sandbox) void this.#stopSandbox(this.#o.abortGraceMs ?? 10_000);
  }

  async #stopSandbox(graceMs: number): Promise<void> {
    try {
      await this.#sandbox?.abort({ graceMs });
    } catch (error) {
      this.#logger.error({ err: error }, 'sandbox abort failed');
    }
  }

  #checkAbort(): void {
    if (this.#abortReason) throw new AbortedError(this.#abortReason);
    if (this.#logFailure) throw this.#logFailure;
  }

  /** The task log cannot be written (a full disk…): the run ends as an internal error, its task is stopped. */
  #logWriteFailed(error: NodeJS.ErrnoException): void {
    if (this.#finished || this.#logFailure) return;
    this.#logFailure = new InternalError('the task log cannot be written', { cause: error });
    this.#logger.error({ err: error }, 'the task log cannot be written; stopping the task');
    if (this.#sandbox && !this.#result) void this.#stopSandbox(this.#o.abortGraceMs ?? 10_000);
  }

  /** Runs the task to its end. Never rejects: every failure becomes a resolution. */
  async run(): Promise<TaskRunOutcome> {
    const o = this.#o;
    const claim = o.claim;
    // The run's files sit directly in the tasks folder: its log, and (made by the uploader only when an upload
    // needs a gzip or spool file) a temporary folder. No folder per run: on a busy disk each mkdir and rmdir in the
    // shared parent costs the event loop a few tenths of a millisecond. Synchronous: one metadata syscall.
    const logPath = join(o.workDir, `${this.taskId}-${this.runId}.log`);
    let log: TaskLog;
    const logOptions = o.maxLogBytes ? { maxBytes: o.maxLogBytes } : {};
    try {
      log = TaskLog.create(logPath, logOptions);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      mkdirSync(o.workDir, { recursive: true }); // someone removed the tasks folder
      log = TaskLog.create(logPath, logOptions);
    }
    log.onWriteError((error) => this.#logWriteFailed(error));
    for (const secret of o.logSecrets ?? []) log.addSecret(secret);
    log.addSecret(this.#credentials.accessToken); // plugins may hand them to the task (a proxy)
    // the hook running now (hooks of a task run one at a time): uploads report their progress to it
    const currentHook: { progress: (() => void) | undefined } = { progress: undefined };
    const uploader = new ArtifactUploader({
      onProgress: () => currentHook.progress?.(),
      queue: o.queue,
      taskId: this.taskId,
      runId: this.runId,
      credentials: () => this.#credentials,
      taskExpires: claim.task.expires,
      tempDir: o.workDir,
      logger: this.#logger,
      ...(o.uploadLimit ? { limit: o.uploadLimit } : {}),
    });
    const info: TaskInfo = {
      taskId: this.taskId,
      runId: this.runId,
      task: claim.task,
      worker: o.worker,
      rootUrl: o.queue.rootUrl,
    };
    const hookOptions: HookRunnerOptions = {
      current: currentHook,
      timeoutMs: o.hookTimeoutMs ?? 30 * 60_000,
      warnAfterMs: o.hookWarnAfterMs ?? 5000,
      logger: this.#logger,
      events: o.events,
      taskId: this.taskId,
    };
    const engineInfo = { name: o.engine.name, capabilities: o.engine.capabilities };
    const baseContext = (plugin: PluginV1, payload: Record<string, unknown>): TaskHookContext => ({
      task: info,
      payload,
      log,
      taskLog: log,
      logger: this.#logger.child({ plugin: plugin.name }),
      signal: this.#abort.signal,
      // replaced by the hook's own for each call (see runForward)
      progress: () => {},
      artifacts: uploader,
      credentials: () => this.#credentials,
      control: { fail: (message, opts) => this.#fail(log, message, opts?.graceMs) },
      engine: engineInfo,
    });

    this.#startKeepAlive(log);
    this.#mark('setup');
    const started = Date.now();
    log.info(
      `Task ${this.taskId} run ${this.runId} on ${o.worker.workerGroup}/${o.worker.workerId} ` +
        `(${o.worker.taskQueueId}), tcw core ${CORE_VERSION}, engine ${o.engine.name}`,
    );

    const entries: PluginEntry[] = [];
    let builder: SandboxBuilderV1 | undefined;
    let resolution: Resolution | undefined;
    let fatal = false;
    let decidingError: Error | undefined;
    let logUploaded = false;
    /** `finished` hooks have begun: a failure now spares the plugins whose `finished` already ran. */
    let finishing = false;
    const closeAndUpload = async (): Promise<boolean> => {
      if (log.closed) return logUploaded;
      await log.close();
      if (log.writeError) {
        this.#logger.error(
          { err: log.writeError.message, lostBytes: log.lostBytes },
          'part of the task log could not be written; uploading what there is',
        );
      }
      try {
        await uploader.uploadFile({
          name: BACKING_LOG_NAME,
          path: log.path,
          contentType: 'text/plain; charset=utf-8',
        });
        logUploaded = true;
      } catch (error) {
        if (!RunGoneError.isRunGone(error)) {
          this.#logger.error({ err: error }, 'could not upload the task log');
          o.events.emit('internal-error', { error: error as Error, fatal: false, taskId: this.taskId });
        }
      }
      return logUploaded;
    };

    try {
      this.#checkAbort();
      o.schema.assertValid(claim.task.payload);
      const payload = claim.task.payload;
      for (const plugin of o.plugins) {
        const context = baseContext(plugin, o.schema.pick(payload, `plugin:${plugin.name}`));
        const entry: PluginEntry = { plugin, taskPlugin: undefined, context };
        const make = plugin.taskPlugin;
        entry.taskPlugin = make
          ? await callHook(hookOptions, plugin.name, 'taskPlugin', this.#abort.signal, (_signal, progress) =>
              make.call(plugin, { ...context, progress }),
            )
          : undefined;
        entries.push(entry);
      }
      await runForward(hookOptions, entries, 'prepare', {}, this.#abort.signal);
      this.#mark('prepare');
      this.#checkAbort();
      builder = await o.engine.newSandboxBuilder({
        task: info,
        payload: o.schema.pick(payload, `engine:${o.engine.name}`),
        log,
        signal: this.#abort.signal,
        logger: this.#logger.child({ engine: o.engine.name }),
        artifacts: uploader,
        credentials: () => this.#credentials,
      });
      await runForward(hookOptions, entries, 'buildSandbox', { builder }, this.#abort.signal);
      this.#mark('build');
      this.#checkAbort();
      const sandbox = await builder.start();
      this.#mark('start');
      builder = undefined;
      this.#sandbox = sandbox;
      if (this.#abortReason) void this.#stopSandbox(o.abortGraceMs ?? 10_000);
      // a plugin failed the task (control.fail) before there was a sandbox to stop: stop it now
      else if (this.#failure !== undefined || this.#logFailure) void this.#stopSandbox(0);
      await runForward(hookOptions, entries, 'started', { sandbox }, this.#abort.signal);
      this.#mark('started');
      const result = await sandbox.wait();
      this.#result = result;
      this.#mark('run');
      this.#checkAbort();
      const verdicts = await runForward(hookOptions, entries, 'stopped', { result }, this.#abort.signal);
      this.#mark('stopped');
      if (result.error) throw result.error;
      const success = result.success && this.#failure === undefined && verdicts.every((v) => v !== false);
      log.info(
        `=== Task Finished === ${success ? 'success' : 'failure'} after ${((Date.now() - started) / 1000).toFixed(3)} s` +
          (result.exitCode !== null ? ` (exit code ${result.exitCode})` : ''),
      );
      if (this.#logFailure) throw this.#logFailure;
      const uploaded = await closeAndUpload();
      this.#mark('log');
      finishing = true;
      await runForward(
        hookOptions,
        entries,
        'finished',
        { success, backingLogUploaded: uploaded },
        this.#abort.signal,
      );
      resolution = { state: success ? 'completed' : 'failed' };
      this.#mark('finished');
    } catch (error) {
      let reason: ExceptionReason | AbortReason;
      if (this.#abortReason) {
        reason = this.#abortReason;
        resolution = reason === 'canceled' ? undefined : { state: 'exception', reason };
        log.error(
          reason === 'canceled'
            ? 'The run was resolved by the queue (cancelled, deadline exceeded or claim expired); stopping the task.'
            : 'The worker is shutting down; the task is aborted and will be retried.',
        );
      } else if (
        RunGoneError.isRunGone(error) ||
        RunGoneError.isRunGone((error as { cause?: unknown })?.cause)
      ) {
        // a hook or the engine met a 409 before the status watch noticed: the queue resolved the run (cancelled,
        // deadline exceeded or claim expired). Stop quietly, like an abort: this is not our fault.
        this.#abortReason = 'canceled';
        reason = 'canceled';
        resolution = undefined;
        log.error(
          'The run was resolved by the queue (cancelled, deadline exceeded or claim expired); stopping the task.',
        );
      } else {
        const outcome = errorOutcome(error);
        resolution = outcome.resolution;
        fatal = outcome.fatal;
        decidingError = error as Error;
        reason = outcome.resolution.state === 'exception' ? outcome.resolution.reason : 'internal-error';
        log.error(outcome.message);
        if (reason === 'internal-error') {
          this.#logger.error({ err: error }, 'task failed with an internal error');
          o.events.emit('internal-error', { error: error as Error, fatal, taskId: this.taskId });
        }
      }
      if (this.#sandbox && !this.#result) {
        await this.#stopSandbox(this.#abortReason ? (o.abortGraceMs ?? 10_000) : 0);
      }
      log.info(
        `=== Task Finished === ${resolution ? describeResolution(resolution) : 'run gone'} after ` +
          `${((Date.now() - started) / 1000).toFixed(3)} s`,
      );
      this.#mark('failed');
      if (log.closed && !this.#abortReason) {
        // after the log was uploaded (a `finished` hook failed): the task log cannot carry it any more
        this.#logger.error({ err: error }, 'the run failed after its task log was uploaded');
      }
      const uploaded = await closeAndUpload();
      this.#mark('log');
      const teardownErrors = await runTeardown(
        hookOptions,
        finishing ? entries.filter((e) => !e.completed?.has('finished')) : entries,
        'exception',
        { reason, backingLogUploaded: uploaded },
        new AbortController().signal,
      );
      fatal = this.#reportTeardown(teardownErrors) || fatal;
      this.#mark('exception');
    }

    // Resolve before disposing (uploads are done; a slow dispose must not risk the claim).
    this.#finished = true;
    this.#stopKeepAlive();
    let reported = false;
    let runGone = this.#abortReason === 'canceled';
    if (resolution && !runGone) {
      const answer = await this.#report(resolution);
      reported = answer === 'reported';
      runGone = answer === 'gone';
    }
    this.#mark('report');

    const disposeErrors = await runTeardown(
      hookOptions,
      entries,
      'dispose',
      { resolution: reported ? resolution : undefined },
      new AbortController().signal,
    );
    fatal = this.#reportTeardown(disposeErrors) || fatal;
    this.#mark('dispose');

    const outcome: TaskRunOutcome = {
      taskId: this.taskId,
      runId: this.runId,
      resolution,
      runGone,
      reported,
      fatal,
      ...(decidingError ? { error: decidingError } : {}),
      timings: this.#timings,
    };
    this.#cleanedUp = this.#cleanup(builder, log, uploader, outcome);
    return outcome;
  }

  /**
   * Resolves when the run's leftovers are gone: the engine's cleanup (result set, sandbox, builder) and the run's
   * files (its log, its upload spool folder). `run()` resolves before this, so the worker can take the next task meanwhile; `task-resolved` is
   * emitted after it.
   */
  get cleanedUp(): Promise<void> {
    return this.#cleanedUp ?? Promise.resolve();
  }

  async #cleanup(
    builder: SandboxBuilderV1 | undefined,
    log: TaskLog,
    uploader: ArtifactUploader,
    outcome: TaskRunOutcome,
  ): Promise<void> {
    const o = this.#o;
    const engineCleanup = (async () => {
      try {
        if (builder) await builder.discard();
        if (this.#sandbox && !this.#result) {
          await this.#stopSandbox(0);
          this.#result = await this.#sandbox.wait();
        }
        await this.#result?.dispose();
      } catch (error) {
        this.#logger.error({ err: error }, 'engine cleanup failed');
        o.events.emit('internal-error', { error: error as Error, fatal: false, taskId: this.taskId });
      }
    })();
    // the run's files (the log's backing file, upload spools) go at the same time as the engine's
    const filesCleanup = (async () => {
      await log.close().catch(() => {});
      await Promise.all([
        removeTree(log.path).catch((error) =>
          this.#logger.warn(
            { err: (error as Error).message, path: log.path },
            'could not remove the task log file',
          ),
        ),
        uploader
          .dispose()
          .catch((error) =>
            this.#logger.warn({ err: (error as Error).message }, 'could not remove the upload spool folder'),
          ),
      ]);
    })();
    await Promise.all([engineCleanup, filesCleanup]);
    this.#mark('cleanup');
    this.#logger.debug({ timings: this.#timings }, 'task run timings (ms per stage)');
    o.events.emit('task-resolved', {
      taskId: this.taskId,
      runId: this.runId,
      resolution: outcome.reported ? outcome.resolution : undefined,
      fatal: outcome.fatal,
      timings: this.#timings,
    });
  }

  #reportTeardown(errors: Error[]): boolean {
    let fatal = false;
    for (const error of errors) {
      const outcome = errorOutcome(error);
      fatal ||= outcome.fatal;
      this.#logger.error({ err: error }, 'plugin teardown failed');
      this.#o.events.emit('internal-error', { error, fatal: outcome.fatal, taskId: this.taskId });
    }
    return fatal;
  }

  async #fail(log: TaskLog, message: string, graceMs?: number): Promise<void> {
    if (this.#failure !== undefined || this.#finished) return;
    this.#failure = message;
    log.error(message);
    if (this.#sandbox) await this.#stopSandbox(graceMs ?? this.#o.abortGraceMs ?? 10_000);
  }

  async #report(resolution: Resolution): Promise<'reported' | 'gone' | 'failed'> {
    const { queue } = this.#o;
    for (let attempt = 0; ; attempt++) {
      try {
        if (resolution.state === 'completed')
          await queue.reportCompleted(this.taskId, this.runId, this.#credentials);
        else if (resolution.state === 'failed')
          await queue.reportFailed(this.taskId, this.runId, this.#credentials);
        else await queue.reportException(this.taskId, this.runId, resolution.reason, this.#credentials);
        this.#logger.info({ resolution: describeResolution(resolution) }, 'task resolved');
        return 'reported';
      } catch (error) {
        if (RunGoneError.isRunGone(error)) {
          this.#logger.warn({ err: (error as Error).message }, 'run was gone when resolving; not resolved');
          return 'gone';
        }
        const status = (error as { statusCode?: number }).statusCode;
        if (attempt >= 4 || (status !== undefined && status < 500)) {
          this.#logger.error({ err: error }, 'could not resolve the task');
          this.#o.events.emit('internal-error', { error: error as Error, fatal: false, taskId: this.taskId });
          return 'failed';
        }
        await sleep(backoff(attempt, 1000, 15_000));
      }
    }
  }

  /** Reclaims before `takenUntil` and polls the status for a cancellation, until the run is resolved. */
  #startKeepAlive(log: TaskLog): void {
    const o = this.#o;
    const fraction = o.reclaimFraction ?? 0.5;
    const schedule = (delay: number) => {
      const timer = setTimeout(async () => {
        this.#timers.delete(timer);
        if (this.#watchStopped.signal.aborted) return;
        try {
          const res = await o.queue.reclaimTask(this.taskId, this.runId, this.#credentials);
          if (this.#watchStopped.signal.aborted) return;
          this.#credentials = res.credentials;
          log.addSecret(res.credentials.accessToken); // plugins may hand them to the task (a proxy)
          this.#takenUntil = res.takenUntil;
          this.#logger.debug({ takenUntil: res.takenUntil.toJSON() }, 'reclaimed');
          o.events.emit('progress', { what: `reclaimed ${this.taskId}/${this.runId}` });
          schedule(this.#claimDurationMs * fraction);
        } catch (error) {
          if (this.#watchStopped.signal.aborted) return;
          if (RunGoneError.isRunGone(error)) {
            this.abort('canceled', (error as Error).message);
            return;
          }
          const left = this.#takenUntil.getTime() - Date.now();
          this.#logger.warn({ err: (error as Error).message, leftMs: left }, 'reclaim failed, retrying');
          if (left <= 0) {
            this.abort('canceled', 'the claim expired before it could be renewed');
            return;
          }
          schedule(Math.min(5000, Math.max(250, left / 4)));
        }
      }, delay);
      timer.unref();
      this.#timers.add(timer);
    };
    schedule(this.#claimDurationMs * fraction);

    const poll = o.cancelPollMs ?? 5000;
    if (poll > 0) {
      const watch = async () => {
        while (!this.#watchStopped.signal.aborted) {
          await sleep(poll, this.#watchStopped.signal);
          if (this.#watchStopped.signal.aborted) return;
          try {
            const status = await o.queue.status(this.taskId);
            const run = status.runs[this.runId];
            if (this.#watchStopped.signal.aborted) return;
            if (run?.state !== 'running') {
              this.abort(
                'canceled',
                `run is ${run?.state ?? 'missing'} (${run?.reasonResolved ?? 'unknown'})`,
              );
              return;
            }
          } catch (error) {
            const status = (error as { statusCode?: number }).statusCode;
            if (status === 401 || status === 403) {
              this.#logger.warn(
                { err: (error as Error).message },
                'cannot read task status; cancellation is noticed at the next reclaim',
              );
              return;
            }
            this.#logger.debug({ err: (error as Error).message }, 'status check failed');
          }
        }
      };
      void watch();
    }
  }

  #stopKeepAlive(): void {
    // a reason of our own: abort() without one builds a DOMException, for nobody
    this.#watchStopped.abort(KEEP_ALIVE_STOPPED);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}
