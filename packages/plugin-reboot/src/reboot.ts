import {
  ConfigError,
  FeatureNotSupportedError,
  InternalError,
  type Logger,
  type PluginV1,
  type Resolution,
  silentLogger,
} from '@tcw/core';
import { runCommand } from './run-command.js';

/** When a task asks for a reboot after it. */
export type TaskReboot = 'always' | 'on-failure' | 'on-exception';

/** The config, as YAML under `plugins.reboot`. */
export interface RebootOptions {
  /** Stop after this many tasks have been claimed. */
  maxTasks?: number;
  /** Stop this many seconds after the worker started. */
  maxLifetime?: number;
  /** Whether tasks may ask for a reboot (payload `reboot`); default false: the key does not exist. */
  allowTaskReboots?: boolean;
  /** argv run (no shell) once the worker has stopped for one of these reasons; default: none, just stop. */
  rebootCommand?: string[];
}

/** About 23 days: below Node's timer limit. */
export const LIMIT_LIFETIME = 2_000_000;

/** Whether a task's `reboot` request applies to how its run ended (`undefined`: the run was gone, e.g. cancelled). */
export function wantsReboot(request: TaskReboot, resolution: Resolution | undefined): boolean {
  if (request === 'always') return true;
  if (request === 'on-failure') return resolution?.state !== 'completed';
  return resolution === undefined || resolution.state === 'exception';
}

function check(options: RebootOptions): void {
  const problems = [];
  const { maxTasks, maxLifetime, rebootCommand, allowTaskReboots } = options;
  if (maxTasks !== undefined && (!Number.isInteger(maxTasks) || maxTasks < 1)) {
    problems.push({ path: 'plugins.reboot.maxTasks', message: 'must be a whole number ≥ 1' });
  }
  if (
    maxLifetime !== undefined &&
    (typeof maxLifetime !== 'number' || !(maxLifetime > 0) || maxLifetime > LIMIT_LIFETIME)
  ) {
    problems.push({
      path: 'plugins.reboot.maxLifetime',
      message: `must be a number of seconds above 0, at most ${LIMIT_LIFETIME}`,
    });
  }
  if (allowTaskReboots !== undefined && typeof allowTaskReboots !== 'boolean') {
    problems.push({ path: 'plugins.reboot.allowTaskReboots', message: 'must be true or false' });
  }
  if (
    rebootCommand !== undefined &&
    (!Array.isArray(rebootCommand) ||
      rebootCommand.length === 0 ||
      rebootCommand.some((a) => typeof a !== 'string') ||
      !rebootCommand[0])
  ) {
    problems.push({
      path: 'plugins.reboot.rebootCommand',
      message: 'must be a non-empty argv list of strings (e.g. [sudo, /sbin/reboot])',
    });
  }
  if (problems.length) throw new ConfigError(problems);
}

/**
 * The reboot plugin: stops the worker gracefully after `maxTasks` tasks, after `maxLifetime` seconds, or after a
 * task that asked for it (payload `reboot`, when `allowTaskReboots`), then — once the worker has stopped, at the
 * plugin's `dispose` — runs `rebootCommand`. The command runs only when this plugin caused the stop: a worker
 * stopped for another reason (a signal, a fatal error, stoponerror) just exits.
 */
export function reboot(options: RebootOptions = {}): PluginV1 {
  check(options);
  const allowTaskReboots = options.allowTaskReboots ?? false;
  let requested: string | undefined;
  let claimed = 0;
  let lifetimeTimer: NodeJS.Timeout | undefined;
  let unsubscribe: (() => void) | undefined;
  let stopWorker: ((reason: string) => void) | undefined;
  let logger: Logger = silentLogger;

  return {
    specificationVersion: 'v1',
    name: 'reboot',
    coreRange: '^0.1.0',
    payloadSchema() {
      if (!allowTaskReboots) {
        throw new FeatureNotSupportedError(
          'task reboots',
          'tasks cannot ask for a reboot on this worker (plugins.reboot.allowTaskReboots is false)',
          { keys: ['reboot'] },
        );
      }
      return {
        properties: {
          reboot: {
            enum: ['always', 'on-failure', 'on-exception'],
            description:
              'Stop the worker (and run its reboot command) after this task: always, when it did not complete (on-failure), or when it resolved exception (on-exception)',
          },
        },
      };
    },
    init(context) {
      const { lifecycle } = context;
      logger = context.logger;
      stopWorker = (reason) => {
        if (lifecycle.stopping) return;
        requested = reason;
        logger.info({ reason }, 'stopping the worker for a reboot');
        lifecycle.stopGracefully(`reboot: ${reason}`);
      };
      if (options.maxLifetime !== undefined) {
        const seconds = options.maxLifetime;
        lifetimeTimer = setTimeout(
          () => stopWorker?.(`the worker reached its maximum lifetime of ${seconds} s (maxLifetime)`),
          seconds * 1000,
        );
        lifetimeTimer.unref();
      }
      if (options.maxTasks !== undefined) {
        const max = options.maxTasks;
        const onClaim = () => {
          claimed++;
          if (claimed >= max) stopWorker?.(`the worker has run ${claimed} tasks (maxTasks ${max})`);
        };
        lifecycle.events.on('task-claimed', onClaim);
        unsubscribe = () => lifecycle.events.off('task-claimed', onClaim);
      }
    },
    taskPlugin({ payload }) {
      const request = payload.reboot as TaskReboot | undefined;
      if (!request) return undefined;
      return {
        dispose({ resolution, task }) {
          if (wantsReboot(request, resolution)) {
            stopWorker?.(`task ${task.taskId} asked for it (reboot: ${request})`);
          }
        },
      };
    },
    async dispose() {
      clearTimeout(lifetimeTimer);
      unsubscribe?.();
      if (!requested) return;
      const argv = options.rebootCommand;
      if (!argv) {
        logger.info({ reason: requested }, 'no rebootCommand configured; the worker just stops');
        return;
      }
      logger.info({ command: argv, reason: requested }, 'running the reboot command');
      let result: Awaited<ReturnType<typeof runCommand>>;
      try {
        result = await runCommand(argv);
      } catch (error) {
        throw new InternalError(
          `plugins.reboot.rebootCommand could not be started (${argv[0]}): ${(error as Error).message}`,
          { cause: error },
        );
      }
      if (result.exitCode !== 0) {
        throw new InternalError(
          `plugins.reboot.rebootCommand ${JSON.stringify(argv)} ended with ${
            result.exitCode === null ? `signal ${result.signal}` : `exit code ${result.exitCode}`
          }: ${result.output.trim()}`,
        );
      }
      logger.info({ command: argv, output: result.output.trim() }, 'reboot command done');
    },
  };
}
