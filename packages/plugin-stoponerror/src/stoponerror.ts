import type { PluginV1 } from '@tcw/core';

/** The config, as YAML under `plugins.stoponerror`. */
export interface StoponerrorOptions {
  /**
   * Also stop on internal errors of the worker loop that no task is part of (a failed `claimWork`, which the
   * loop otherwise retries with backoff). Default false.
   */
  includeWorkerErrors?: boolean;
}

/**
 * The stoponerror plugin: after a non-fatal internal error — a task resolved `exception/internal-error`, a
 * plugin's teardown hook failed, the task log could not be uploaded — the worker stops gracefully (running tasks
 * finish, nothing new is claimed), so a supervisor can replace a machine that may be broken. Fatal errors stop
 * the worker anyway and are left to core.
 */
export function stoponerror(options: StoponerrorOptions = {}): PluginV1 {
  const includeWorkerErrors = options.includeWorkerErrors ?? false;
  let unsubscribe: (() => void) | undefined;
  return {
    specificationVersion: 'v1',
    name: 'stoponerror',
    coreRange: '^0.1.0',
    init({ lifecycle, logger }) {
      const onError = (event: { error: Error; fatal: boolean; taskId?: string }) => {
        if (event.fatal) return;
        if (event.taskId === undefined && !includeWorkerErrors) return;
        if (lifecycle.stopping) return;
        const where = event.taskId ? `in task ${event.taskId}` : 'in the worker loop';
        logger.warn(
          { err: event.error, taskId: event.taskId },
          `internal error ${where}; stopping the worker gracefully`,
        );
        lifecycle.stopGracefully(`stoponerror: internal error ${where}: ${event.error.message}`, {
          fatal: true,
        });
      };
      lifecycle.events.on('internal-error', onError);
      unsubscribe = () => lifecycle.events.off('internal-error', onError);
    },
    dispose() {
      unsubscribe?.();
      unsubscribe = undefined;
    },
  };
}
