import { ConfigError, type PluginV1 } from '@tcw/core';

/** The config, as YAML under `plugins.watchdog`. */
export interface WatchdogOptions {
  /** Seconds without progress (of the worker loop, or of one plugin hook) before the worker is stopped (default 2700). */
  timeout?: number;
  /**
   * Seconds the worker gets, after the watchdog stopped it, to end by itself; then the process exits with code 75
   * (for an engine or hook so stuck that even an abort does not end it). 0 disables this. Default 60.
   */
  forceExitAfter?: number;
}

/** Not config: how the process is ended after `forceExitAfter` (tests pass their own). */
export interface WatchdogHooks {
  exit?: (code: number) => void;
}

export const DEFAULT_TIMEOUT = 2700;
export const DEFAULT_FORCE_EXIT_AFTER = 60;
/** The exit code when the watchdog has to end the process itself: 75, the `tcw` app's "forced exit". */
export const FORCE_EXIT_CODE = 75;

interface ActiveHook {
  plugin: string;
  hook: string;
  taskId: string;
  since: number;
}

function check(options: WatchdogOptions): { timeoutMs: number; forceExitMs: number } {
  const timeout = options.timeout ?? DEFAULT_TIMEOUT;
  const forceExitAfter = options.forceExitAfter ?? DEFAULT_FORCE_EXIT_AFTER;
  const problems = [];
  if (typeof timeout !== 'number' || !(timeout > 0) || timeout > 2_000_000) {
    problems.push({ path: 'plugins.watchdog.timeout', message: 'must be a number of seconds above 0' });
  }
  if (typeof forceExitAfter !== 'number' || !(forceExitAfter >= 0) || forceExitAfter > 86_400) {
    problems.push({
      path: 'plugins.watchdog.forceExitAfter',
      message: 'must be a number of seconds from 0 (never) to 86400',
    });
  }
  if (problems.length) throw new ConfigError(problems);
  return { timeoutMs: timeout * 1000, forceExitMs: forceExitAfter * 1000 };
}

/**
 * The watchdog plugin. Progress is what core reports on `lifecycle.events`: every turn of the claim loop, every
 * hook's start and end, every reclaim. The watchdog fires when
 * - one plugin hook has been running longer than `timeout` (it names the plugin, hook and task), or
 * - no task's process is running and nothing has progressed for `timeout` (the loop is stuck: it names the last
 *   thing that progressed).
 * While a task's process runs (between its `started` and `stopped` stages) and no hook is busy, silence is normal
 * and does not count. When it fires it logs what is stuck and stops the worker now (running tasks are aborted as
 * `worker-shutdown`, so the queue retries them); if the worker has not ended `forceExitAfter` seconds later, it ends
 * the process.
 */
export function watchdog(options: WatchdogOptions = {}, hooks: WatchdogHooks = {}): PluginV1 {
  const { timeoutMs, forceExitMs } = check(options);
  const exit = hooks.exit ?? ((code: number) => process.exit(code));
  const active = new Map<string, ActiveHook>();
  const running = new Set<string>();
  let last = { at: Date.now(), what: 'worker start' };
  let stopping = false;
  let fired = false;
  let ticker: NodeJS.Timeout | undefined;
  let forceTimer: NodeJS.Timeout | undefined;
  let unsubscribe: (() => void) | undefined;

  return {
    specificationVersion: 'v1',
    name: 'watchdog',
    coreRange: '^0.1.0',
    init({ lifecycle, logger }) {
      const { events } = lifecycle;
      const onProgress = ({ what }: { what: string }) => {
        last = { at: Date.now(), what };
      };
      const onHookStart = (e: { plugin: string; hook: string; taskId: string }) => {
        active.set(`${e.plugin}\u0000${e.hook}\u0000${e.taskId}`, { ...e, since: Date.now() });
      };
      const onHookEnd = (e: { plugin: string; hook: string; taskId: string }) => {
        active.delete(`${e.plugin}\u0000${e.hook}\u0000${e.taskId}`);
      };
      const onStopping = () => {
        stopping = true;
      };
      events.on('progress', onProgress);
      events.on('hook-start', onHookStart);
      events.on('hook-end', onHookEnd);
      events.on('stopping', onStopping);
      unsubscribe = () => {
        events.off('progress', onProgress);
        events.off('hook-start', onHookStart);
        events.off('hook-end', onHookEnd);
        events.off('stopping', onStopping);
      };

      const fire = (what: string, details: object) => {
        fired = true;
        clearInterval(ticker);
        logger.error(
          { ...details, timeoutSeconds: timeoutMs / 1000 },
          `watchdog: ${what}; stopping the worker`,
        );
        lifecycle.stopNow(`watchdog: ${what}`, { fatal: true });
        if (forceExitMs > 0) {
          forceTimer = setTimeout(() => {
            logger.error(
              { forceExitAfterSeconds: forceExitMs / 1000, stuck: [...active.values()] },
              `watchdog: the worker did not end after being stopped; exiting the process (code ${FORCE_EXIT_CODE})`,
            );
            exit(FORCE_EXIT_CODE);
          }, forceExitMs);
          forceTimer.unref();
        }
      };

      const tick = () => {
        if (fired) return;
        const now = Date.now();
        const stuck = [...active.values()].filter((h) => now - h.since > timeoutMs);
        if (stuck.length) {
          const names = stuck.map(
            (h) => `${h.plugin}.${h.hook} (task ${h.taskId}, ${Math.round((now - h.since) / 1000)} s)`,
          );
          fire(`no progress for ${timeoutMs / 1000} s: hook ${names.join(', ')} has not returned`, {
            stuck,
          });
          return;
        }
        if (!stopping && running.size === 0 && active.size === 0 && now - last.at > timeoutMs) {
          fire(
            `the worker loop made no progress for ${Math.round((now - last.at) / 1000)} s (last progress: ${last.what})`,
            { lastProgress: last.what, lastProgressAt: new Date(last.at).toISOString() },
          );
        }
      };
      last = { at: Date.now(), what: 'worker start' };
      ticker = setInterval(tick, Math.max(10, Math.min(timeoutMs / 4, 30_000)));
      ticker.unref();
    },
    taskPlugin({ task }) {
      const key = `${task.taskId}/${task.runId}`;
      const done = () => {
        running.delete(key);
      };
      return {
        started() {
          running.add(key);
        },
        stopped: () => {
          done();
          return undefined;
        },
        exception: done,
        dispose: done,
      };
    },
    dispose() {
      clearInterval(ticker);
      clearTimeout(forceTimer);
      unsubscribe?.();
    },
  };
}
