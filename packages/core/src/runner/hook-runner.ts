import { HookTimeoutError } from '../errors/hook-timeout-error.js';
import { PluginError } from '../errors/plugin-error.js';
import { TcwError } from '../errors/tcw-error.js';
import type { Logger } from '../logger.js';
import type { PluginV1 } from '../plugin/v1/plugin.js';
import type { TaskHookContext, TaskHookName, TaskPluginV1 } from '../plugin/v1/task-plugin.js';
import type { WorkerEvents } from '../worker/worker-events.js';

export interface HookRunnerOptions {
  /**
   * A hook that has not settled after this long, without calling its `progress()` meanwhile, fails with
   * `HookTimeoutError` (fatal).
   */
  timeoutMs: number;
  /** Set while a hook runs to that hook's `progress` (the task's uploads report to it); cleared after. */
  current?: { progress: (() => void) | undefined };
  /** After this long a still-running hook logs "waiting for plugin X", then again every minute. */
  warnAfterMs: number;
  logger: Logger;
  events: WorkerEvents;
  taskId: string;
}

export interface PluginEntry {
  plugin: PluginV1;
  taskPlugin: TaskPluginV1 | undefined;
  context: TaskHookContext;
  /** The forward hooks this plugin has completed (so a failure in `finished` spares those already finished). */
  completed?: Set<TaskHookName>;
}

/** Sorts plugins into their tiers (`pre`, normal, `post`), keeping configuration order within each tier. */
export function orderPlugins<P extends { enforce?: 'pre' | 'post' | undefined }>(plugins: readonly P[]): P[] {
  const tier = (p: P) => (p.enforce === 'pre' ? 0 : p.enforce === 'post' ? 2 : 1);
  return plugins
    .map((p, i) => ({ p, i }))
    .sort((a, b) => tier(a.p) - tier(b.p) || a.i - b.i)
    .map((x) => x.p);
}

/** After a hook's timeout aborts its signal, how long it may take to stop (at most the timeout itself). */
const ABORT_WAIT_MS = 5000;

/**
 * Calls one hook of a plugin with its timeout, its "waiting for" warnings and the error attributed to the
 * plugin (`PluginError`, or `HookTimeoutError`).
 */
export async function callHook<T>(
  options: HookRunnerOptions,
  plugin: string,
  hook: string,
  taskSignal: AbortSignal,
  fn: (signal: AbortSignal, progress: () => void) => Promise<T> | T,
): Promise<T> {
  const { logger, events, taskId } = options;
  // The hook's signal aborts with the task's (even after the hook returned: a plugin may keep it for work it
  // started) or at the hook's timeout. Linked by hand: AbortSignal.any costs several times more, per hook call.
  const hookAbort = new AbortController();
  const signal = hookAbort.signal;
  if (taskSignal.aborted) hookAbort.abort(taskSignal.reason);
  else taskSignal.addEventListener('abort', () => hookAbort.abort(taskSignal.reason), { once: true });
  let warnTimer: NodeJS.Timeout | undefined;
  let timeoutTimer: NodeJS.Timeout | undefined;
  const started = Date.now();
  const warn = () => {
    logger.warn(
      { plugin, hook, taskId, waitingMs: Date.now() - started },
      `waiting for plugin ${plugin} (${hook})`,
    );
    warnTimer = setTimeout(warn, 60_000);
    warnTimer.unref();
  };
  warnTimer = setTimeout(warn, options.warnAfterMs);
  warnTimer.unref();
  events.emit('hook-start', { plugin, hook, taskId });
  events.emit('progress', { what: `${plugin}.${hook} started` });
  let timeUp!: (value: 'timeout') => void;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timeUp = resolve;
  });
  let over = false;
  const arm = () => {
    clearTimeout(timeoutTimer);
    timeoutTimer = setTimeout(() => timeUp('timeout'), options.timeoutMs);
    timeoutTimer.unref();
  };
  // progress after the hook settled or timed out changes nothing
  const progress = () => {
    if (over) return;
    arm();
    // the watchdog plugin (and anyone listening) sees a worker at work
    events.emit('progress', { what: `${plugin}.${hook} progressed` });
  };
  const previous = options.current?.progress;
  if (options.current) options.current.progress = progress;
  arm();
  try {
    const call = Promise.resolve().then(() => fn(signal, progress));
    const first = await Promise.race([
      call.then(
        () => 'settled' as const,
        () => 'settled' as const,
      ),
      timedOut,
    ]);
    over = true;
    if (first === 'settled') return await call;
    const error = new HookTimeoutError(plugin, hook, options.timeoutMs);
    hookAbort.abort(error);
    // give the hook a moment to honour its aborted signal, so the `exception` and `dispose` hooks that follow do
    // not run while it is still at work
    const graceMs = Math.min(ABORT_WAIT_MS, options.timeoutMs);
    let graceTimer: NodeJS.Timeout | undefined;
    const honoured = await Promise.race([
      call.then(
        () => true,
        () => true,
      ),
      new Promise<false>((resolve) => {
        graceTimer = setTimeout(() => resolve(false), graceMs);
      }),
    ]);
    clearTimeout(graceTimer);
    if (!honoured) {
      logger.warn(
        { plugin, hook, taskId, graceMs },
        `plugin ${plugin} (${hook}) still runs ${graceMs} ms after its timeout aborted it; going on without it`,
      );
    }
    throw error;
  } catch (error) {
    if (TcwError.hasCode(error, HookTimeoutError.code)) throw error;
    throw new PluginError(plugin, hook, error);
  } finally {
    over = true;
    if (options.current?.progress === progress) options.current.progress = previous;
    clearTimeout(warnTimer);
    clearTimeout(timeoutTimer);
    events.emit('hook-end', { plugin, hook, taskId });
    events.emit('progress', { what: `${plugin}.${hook} ended` });
  }
}

type HookArgs = Record<string, unknown>;

/**
 * Runs a forward hook (`prepare` … `finished`) on every task plugin in order; the first error stops the stage
 * and is thrown. Returns each plugin's return value.
 */
export async function runForward(
  options: HookRunnerOptions,
  entries: readonly PluginEntry[],
  hook: Exclude<TaskHookName, 'exception' | 'dispose'>,
  args: HookArgs,
  taskSignal: AbortSignal,
): Promise<unknown[]> {
  const results: unknown[] = [];
  for (const entry of entries) {
    const fn = entry.taskPlugin?.[hook] as ((ctx: unknown) => unknown) | undefined;
    if (!fn) continue;
    // an abort (cancel, shutdown) during this stage: the plugins after the one running then are not called
    if (taskSignal.aborted) throw taskSignal.reason;
    results.push(
      await callHook(options, entry.plugin.name, hook, taskSignal, (signal, progress) =>
        fn.call(entry.taskPlugin, { ...entry.context, ...args, signal, progress }),
      ),
    );
    entry.completed ??= new Set();
    entry.completed.add(hook);
  }
  return results;
}

/**
 * Runs a teardown hook (`exception`, `dispose`) on every task plugin in reverse order. Errors do not stop the
 * others; they are returned.
 */
export async function runTeardown(
  options: HookRunnerOptions,
  entries: readonly PluginEntry[],
  hook: 'exception' | 'dispose',
  args: HookArgs,
  taskSignal: AbortSignal,
): Promise<Error[]> {
  const errors: Error[] = [];
  for (const entry of [...entries].reverse()) {
    const fn = entry.taskPlugin?.[hook] as ((ctx: unknown) => unknown) | undefined;
    if (!fn) continue;
    try {
      await callHook(options, entry.plugin.name, hook, taskSignal, (signal, progress) =>
        fn.call(entry.taskPlugin, { ...entry.context, ...args, signal, progress }),
      );
    } catch (error) {
      errors.push(error as Error);
    }
  }
  return errors;
}
