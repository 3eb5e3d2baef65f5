import { statfsSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { EngineV1 } from '../engine/v1/engine.js';
import { InternalError } from '../errors/internal-error.js';
import { PluginError } from '../errors/plugin-error.js';
import { errorOutcome } from '../errors/resolution.js';
import { TcwError } from '../errors/tcw-error.js';
import type { Logger } from '../logger.js';
import { silentLogger } from '../logger.js';
import type { PluginV1, StopOptions, WorkerLifecycle } from '../plugin/v1/plugin.js';
import { assertCompatible } from '../provider.js';
import type { QueuePort } from '../queue/queue-port.js';
import { orderPlugins } from '../runner/hook-runner.js';
import { TaskRun, type TaskRunOutcome } from '../runner/task-run.js';
import type { ComposedPayloadSchema } from '../schema/payload-schema.js';
import type { Claim, WorkerIdentity } from '../task.js';
import { createLimiter } from '../util/limiter.js';
import { removeTree } from '../util/remove-tree.js';
import { backoff, sleep } from '../util/sleep.js';
import { lockWorkDir } from '../util/work-dir-lock.js';
import { CORE_VERSION } from '../version.js';
import { composeWorkerSchema } from './compose.js';
import { WorkerEvents } from './worker-events.js';

export interface WorkerOptions {
  queue: QueuePort;
  engine: EngineV1;
  /** Enabled plugins in configuration order (tiers `pre`/`post` are applied). */
  plugins: readonly PluginV1[];
  identity: WorkerIdentity;
  /** Tasks run at once (capped by the engine's `maxConcurrency`). */
  capacity: number;
  /** A folder of the worker's own (task logs, upload spools, plugin folders). */
  workDir: string;
  /**
   * Values every task log masks as `[secret]` (the worker's own access token, config values from a secrets
   * service…); each run's temporary credentials are masked in its own log too.
   */
  logSecrets?: readonly string[];
  /**
   * A task log keeps this many bytes from its start (default: no limit); past them only the last quarter (at most
   * 1 MiB) of what follows is kept, written when the task ends after a line saying how much was dropped.
   */
  maxLogBytes?: number;
  logger?: Logger;
  events?: WorkerEvents;
  /** Per plugin hook (default 30 min); a timeout is fatal. */
  hookTimeoutMs?: number;
  hookWarnAfterMs?: number;
  /** Polite signal → kill, when tasks are aborted (default 10 s). */
  abortGraceMs?: number;
  /** Status poll that notices cancellations (default 5 s; 0 = only at reclaim). */
  cancelPollMs?: number;
  reclaimFraction?: number;
  /** Pause after a claimWork that returned nothing (default 250 ms). */
  claimPauseMs?: number;
  /**
   * Claim only while the file system of `workDir` (task logs, upload spools) has at least this many bytes free
   * (default 0: no check); checked again every second while there is too little.
   */
  minFreeDiskBytes?: number;
  /** Graceful stop: how long running tasks may go on before they are aborted (default 5 min). */
  shutdownGraceMs?: number;
  /** Worker-wide concurrent artifact uploads (default 8). */
  uploadConcurrency?: number;
  /** Emit `idle` this often while nothing runs (default 60 s). */
  idleReportMs?: number;
}

export interface WorkerExit {
  mode: 'graceful' | 'now';
  reason: string;
  /** Stopped because of a fatal internal error (exit code 4 of a script, a hook timeout, …). */
  fatal: boolean;
  tasksRun: number;
}

/**
 * The worker loop: claims work only for free slots (long-polling `claimWork`), runs each claim as a `TaskRun`,
 * and stops gracefully (stop claiming, let tasks finish within the grace period, then abort them) or now (abort
 * tasks, resolved `worker-shutdown`).
 */
export class Worker {
  readonly events: WorkerEvents;
  readonly capacity: number;
  readonly #o: WorkerOptions;
  readonly #logger: Logger;
  readonly #plugins: PluginV1[];
  readonly #runs = new Map<string, TaskRun>();
  /** Cleanups of finished runs still in flight. */
  readonly #cleanups = new Set<Promise<void>>();
  readonly #stop = new AbortController();
  readonly #uploadLimit;
  #schema: ComposedPayloadSchema | undefined;
  #stopMode: 'graceful' | 'now' | undefined;
  #stopReason = '';
  #fatal = false;
  #tasksRun = 0;
  #slotWaiters: Array<() => void> = [];
  #started = false;
  #idleTimer: NodeJS.Timeout | undefined;
  #idleSince = Date.now();

  constructor(options: WorkerOptions) {
    this.#o = options;
    this.events = options.events ?? new WorkerEvents();
    this.#logger = options.logger ?? silentLogger;
    this.#plugins = orderPlugins(options.plugins);
    const max = options.engine.capabilities.maxConcurrency;
    this.capacity = max ? Math.min(options.capacity, max) : options.capacity;
    if (!Number.isInteger(this.capacity) || this.capacity < 1) {
      throw new RangeError(`capacity must be a positive integer, got ${options.capacity}`);
    }
    this.#uploadLimit = createLimiter(options.uploadConcurrency ?? 8);
  }

  /** The composed payload schema (after `start()`). */
  get payloadSchema(): ComposedPayloadSchema {
    if (!this.#schema) throw new Error('the worker has not been started');
    return this.#schema;
  }

  get activeTasks(): number {
    return this.#runs.size;
  }

  get stopping(): boolean {
    return this.#stopMode !== undefined;
  }

  /** Gives the work folder back (see lockWorkDir); a no-op until start() took it. */
  #releaseWorkDir: () => void = () => {};

  /**
   * Checks every extension's contract version, composes the payload schema (a key claimed twice throws here),
   * and initialises the engine then the plugins. Anything wrong stops the worker before it claims anything.
   */
  async start(): Promise<void> {
    if (this.#started) return;
    const { engine, identity } = this.#o;
    assertCompatible(`engine ${engine.name}`, engine);
    for (const plugin of this.#plugins) assertCompatible(`plugin ${plugin.name}`, plugin);
    this.#schema = composeWorkerSchema(engine, this.#plugins);
    // before the engine's init: it may remove what it takes for a crashed worker's leftovers
    this.#releaseWorkDir = lockWorkDir(this.#o.workDir);
    try {
      const tasksDir = join(this.#o.workDir, 'tasks');
      await mkdir(tasksDir, { recursive: true });
      // what runs of a worker that died left (the folder is ours now): logs and upload spools, removed before
      // the first claim (on the helper thread)
      const leftovers = await readdir(tasksDir);
      if (leftovers.length > 0) {
        this.#logger.info({ count: leftovers.length }, 'removing task files a previous worker left');
        await Promise.all(
          leftovers.map((name) =>
            removeTree(join(tasksDir, name)).catch((error) =>
              this.#logger.warn(
                { err: (error as Error).message, name },
                'could not remove a leftover task file',
              ),
            ),
          ),
        );
      }
      try {
        await engine.init?.({
          logger: this.#logger.child({ engine: engine.name }),
          worker: identity,
          workDir: join(this.#o.workDir, 'engine'),
        });
      } catch (error) {
        // our own errors (a ConfigError…) keep their type; anything else says it was the engine
        if (error instanceof TcwError) throw error;
        const detail = error instanceof Error ? error.message : String(error);
        throw new InternalError(`engine ${engine.name} failed in init: ${detail}`, { cause: error });
      }
    } catch (error) {
      this.#releaseWorkDir();
      throw error;
    }
    const initialised: PluginV1[] = [];
    try {
      await this.#initPlugins(initialised);
    } catch (error) {
      // undo what started (a listening server, a timer), so a failed start leaves nothing running
      await this.#dispose(initialised);
      this.#releaseWorkDir();
      throw error;
    }
    this.#started = true;
  }

  async #initPlugins(initialised: PluginV1[]): Promise<void> {
    const { engine, identity } = this.#o;
    const self = this;
    const lifecycle: WorkerLifecycle = {
      stopGracefully: (reason, options) => this.stopGracefully(reason, options),
      stopNow: (reason, options) => this.stopNow(reason, options),
      get stopping() {
        return self.stopping;
      },
      events: this.events,
    };
    for (const plugin of this.#plugins) {
      const workDir = join(this.#o.workDir, 'plugins', plugin.name);
      await mkdir(workDir, { recursive: true });
      try {
        await plugin.init?.({
          logger: this.#logger.child({ plugin: plugin.name }),
          worker: identity,
          rootUrl: this.#o.queue.rootUrl,
          engine: { name: engine.name, capabilities: engine.capabilities },
          lifecycle,
          workDir,
          coreVersion: CORE_VERSION,
        });
      } catch (error) {
        // our own errors (a ConfigError…) keep their type; anything else says which plugin failed
        throw error instanceof TcwError ? error : new PluginError(plugin.name, 'init', error);
      }
      initialised.push(plugin);
    }
  }

  /** Stop claiming; let running tasks finish (aborted as `worker-shutdown` after the grace period). */
  stopGracefully(reason: string, options: StopOptions = {}): void {
    if (options.fatal) this.#fatal = true;
    if (this.#stopMode) return;
    this.#stopMode = 'graceful';
    this.#stopReason = reason;
    this.#logger.info({ reason, running: this.#runs.size }, 'stopping gracefully');
    this.events.emit('stopping', { mode: 'graceful', reason });
    this.#stop.abort();
    this.#wakeSlots();
    const grace = this.#o.shutdownGraceMs ?? 5 * 60_000;
    if (this.#runs.size > 0) {
      const timer = setTimeout(() => {
        for (const run of this.#runs.values()) run.abort('worker-shutdown', 'shutdown grace period is over');
      }, grace);
      timer.unref();
    }
  }

  /** Stop now: abort every running task (resolved `worker-shutdown`, so the queue retries it). */
  stopNow(reason: string, options: StopOptions = {}): void {
    if (options.fatal) this.#fatal = true;
    if (this.#stopMode !== 'now') {
      if (!this.#stopMode) this.#stopReason = reason;
      this.#stopMode = 'now';
      this.#logger.warn({ reason, running: this.#runs.size }, 'stopping now');
      this.events.emit('stopping', { mode: 'now', reason });
    }
    this.#stop.abort();
    this.#wakeSlots();
    for (const run of this.#runs.values()) run.abort('worker-shutdown', reason);
  }

  #wakeSlots(): void {
    const waiters = this.#slotWaiters;
    this.#slotWaiters = [];
    for (const wake of waiters) wake();
  }

  #waitForSlot(): Promise<void> {
    return new Promise((resolve) => this.#slotWaiters.push(resolve));
  }

  #idleCheck(): void {
    clearTimeout(this.#idleTimer);
    if (this.#runs.size > 0 || this.stopping) return;
    const every = this.#o.idleReportMs ?? 60_000;
    this.#idleTimer = setTimeout(() => {
      this.events.emit('idle', { idleMs: Date.now() - this.#idleSince });
      this.#idleCheck();
    }, every);
    this.#idleTimer.unref();
  }

  /** Claims and runs tasks until stopped; then waits for running tasks, disposes plugins and engine. */
  async run(): Promise<WorkerExit> {
    await this.start();
    const { queue, identity } = this.#o;
    let errors = 0;
    this.#idleCheck();
    // one promise for the whole loop: a listener added per claim would pile up on the stop signal, and each
    // addEventListener scans the listeners already there
    const stopped = new Promise<'stopped'>((resolve) =>
      this.#stop.signal.aborted
        ? resolve('stopped')
        : this.#stop.signal.addEventListener('abort', () => resolve('stopped'), { once: true }),
    );
    while (!this.stopping) {
      this.events.emit('progress', { what: 'claim loop' });
      const free = this.#freeSlots();
      if (free <= 0) {
        await this.#waitForSlot();
        continue;
      }
      if (!this.#enoughDiskSpace()) {
        await sleep(1000, this.#stop.signal);
        continue;
      }
      const request = queue.claimWork(identity.taskQueueId, {
        workerGroup: identity.workerGroup,
        workerId: identity.workerId,
        tasks: Math.min(free, 32),
      });
      let claims: Claim[] | 'stopped';
      try {
        claims = await Promise.race([request, stopped]);
      } catch (error) {
        errors++;
        const delay = backoff(Math.min(errors, 8), 500, 30_000);
        this.#logger.error({ err: error, retryInMs: delay }, 'claimWork failed');
        this.events.emit('internal-error', { error: error as Error, fatal: false });
        await sleep(delay, this.#stop.signal);
        continue;
      }
      if (claims === 'stopped') {
        // The long-poll may still hand us tasks: give them back at once so the queue retries them elsewhere.
        request.then(
          (late) => this.#returnClaims(late),
          () => {},
        );
        break;
      }
      errors = 0;
      if (claims.length === 0) {
        await sleep(this.#o.claimPauseMs ?? 250, this.#stop.signal);
        continue;
      }
      for (const claim of claims) this.#runClaim(claim);
    }
    while (this.#runs.size > 0) await this.#waitForSlot();
    await Promise.all(this.#cleanups);
    clearTimeout(this.#idleTimer);
    await this.#dispose();
    this.#releaseWorkDir();
    return {
      mode: this.#stopMode ?? 'graceful',
      reason: this.#stopReason,
      fatal: this.#fatal,
      tasksRun: this.#tasksRun,
    };
  }

  #lowOnSpace = false;

  /** Whether the work folder has `minFreeDiskBytes` free (said once when it has not, and once when it has again). */
  #enoughDiskSpace(): boolean {
    const min = this.#o.minFreeDiskBytes ?? 0;
    if (min <= 0) return true;
    let free: number;
    try {
      const fs = statfsSync(this.#o.workDir); // one syscall, cheaper synchronous (see util/paths.ts)
      free = fs.bavail * fs.bsize;
    } catch {
      return true; // cannot tell: do not stop working for it
    }
    if (free >= min) {
      if (this.#lowOnSpace)
        this.#logger.info({ free, min }, 'enough free space in the work folder again; claiming');
      this.#lowOnSpace = false;
      return true;
    }
    if (!this.#lowOnSpace) {
      this.#logger.warn(
        { free, min, workDir: this.#o.workDir },
        'too little free space in the work folder: not claiming until there is more',
      );
    }
    this.#lowOnSpace = true;
    return false;
  }

  #returnClaims(claims: Claim[]): void {
    for (const claim of claims) {
      this.#logger.info({ taskId: claim.taskId, runId: claim.runId }, 'claimed while stopping; returning it');
      this.#o.queue
        .reportException(claim.taskId, claim.runId, 'worker-shutdown', claim.credentials)
        .catch((error) =>
          this.#logger.warn({ err: error, taskId: claim.taskId }, 'could not return a late claim'),
        );
    }
  }

  #runClaim(claim: Claim): void {
    const o = this.#o;
    const key = `${claim.taskId}/${claim.runId}`;
    const run = new TaskRun({
      claim,
      engine: o.engine,
      plugins: this.#plugins,
      schema: this.payloadSchema,
      queue: o.queue,
      worker: o.identity,
      logger: this.#logger,
      events: this.events,
      workDir: join(o.workDir, 'tasks'),
      uploadLimit: this.#uploadLimit,
      ...(o.logSecrets?.length ? { logSecrets: o.logSecrets } : {}),
      ...(o.maxLogBytes ? { maxLogBytes: o.maxLogBytes } : {}),
      ...(o.hookTimeoutMs !== undefined ? { hookTimeoutMs: o.hookTimeoutMs } : {}),
      ...(o.hookWarnAfterMs !== undefined ? { hookWarnAfterMs: o.hookWarnAfterMs } : {}),
      ...(o.abortGraceMs !== undefined ? { abortGraceMs: o.abortGraceMs } : {}),
      ...(o.cancelPollMs !== undefined ? { cancelPollMs: o.cancelPollMs } : {}),
      ...(o.reclaimFraction !== undefined ? { reclaimFraction: o.reclaimFraction } : {}),
    });
    this.#runs.set(key, run);
    this.#tasksRun++;
    clearTimeout(this.#idleTimer);
    this.#logger.info({ taskId: claim.taskId, runId: claim.runId }, 'claimed task');
    this.events.emit('task-claimed', { taskId: claim.taskId, runId: claim.runId });
    if (this.#stopMode === 'now') run.abort('worker-shutdown', this.#stopReason);
    run
      .run()
      .then((outcome) => {
        this.#afterRun(outcome);
        // the slot frees now; the run's cleanup goes on meanwhile (bounded: see #freeSlots)
        const cleanup: Promise<void> = run.cleanedUp
          .catch((error) => this.#logger.error({ err: error, taskId: claim.taskId }, 'task cleanup failed'))
          .finally(() => {
            this.#cleanups.delete(cleanup);
            this.#wakeSlots();
          });
        this.#cleanups.add(cleanup);
      })
      .catch((error) => {
        // run() does not reject; this is a bug in core, and the worker must not go on as if nothing happened.
        this.#logger.error({ err: error, taskId: claim.taskId }, 'task run crashed');
        this.#fatal = true;
        this.stopGracefully('a task run crashed');
      })
      .finally(() => {
        this.#runs.delete(key);
        if (this.#runs.size === 0) {
          this.#idleSince = Date.now();
          this.#idleCheck();
        }
        this.#wakeSlots();
      });
  }

  /**
   * Slots to claim for: capacity minus running tasks, and minus cleanups beyond `capacity` still in flight (a
   * finished run's cleanup overlaps the next task, but cleanups cannot pile up without bound).
   */
  #freeSlots(): number {
    return this.capacity - this.#runs.size - Math.max(0, this.#cleanups.size - this.capacity);
  }

  #afterRun(outcome: TaskRunOutcome): void {
    if (outcome.fatal) {
      this.#fatal = true;
      const why = outcome.error ? errorOutcome(outcome.error).message : 'fatal internal error';
      this.stopGracefully(`fatal error in task ${outcome.taskId}: ${why}`);
    }
  }

  /** Disposes the plugins (all, or those given), last first, then the engine; failures are logged. */
  async #dispose(plugins: readonly PluginV1[] = this.#plugins): Promise<void> {
    for (const plugin of [...plugins].reverse()) {
      try {
        await plugin.dispose?.();
      } catch (error) {
        this.#logger.error({ err: error, plugin: plugin.name }, 'plugin dispose failed');
      }
    }
    try {
      await this.#o.engine.dispose?.();
    } catch (error) {
      this.#logger.error({ err: error, engine: this.#o.engine.name }, 'engine dispose failed');
    }
  }
}
