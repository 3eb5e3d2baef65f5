import { ConfigError, FeatureNotSupportedError, type PayloadSchemaPart, type PluginV1 } from '@tcw/core';

/** Whether a task may (or must) set its own `maxRunTime`. */
export type PerTaskLimit = 'require' | 'allow' | 'forbid';

/** The config, as YAML under `plugins.maxruntime`. */
export interface MaxruntimeOptions {
  /** The ceiling, in seconds: the most any task may run, and the limit of a task that sets none (default 86400). */
  maxRunTime?: number;
  /** `require`: every task sets `maxRunTime`; `allow` (default): it may; `forbid`: the key does not exist. */
  perTaskLimit?: PerTaskLimit;
  /** Seconds between the polite signal (SIGTERM) and the kill when the limit is reached (default 10). */
  gracePeriod?: number;
}

export const DEFAULT_MAX_RUN_TIME = 86_400;
export const DEFAULT_GRACE_PERIOD = 10;
/** About 23 days: longer than a Taskcluster task's deadline can be, and below Node's timer limit. */
export const LIMIT_MAX_RUN_TIME = 2_000_000;

/** The message written to the task log when a task runs out of time. */
export function overrunMessage(seconds: number, graceful: boolean, graceSeconds: number): string {
  const how = graceful
    ? graceSeconds > 0
      ? `it is sent SIGTERM (or the engine's equivalent) now and killed after ${graceSeconds} s if it is still running`
      : 'it is killed now'
    : 'it is killed now (this engine cannot stop a task gracefully)';
  return `maxRunTime exceeded: the task ran for its maximum run time of ${seconds} s; ${how}. The task fails.`;
}

function check(options: MaxruntimeOptions): Required<MaxruntimeOptions> {
  const maxRunTime = options.maxRunTime ?? DEFAULT_MAX_RUN_TIME;
  const perTaskLimit = options.perTaskLimit ?? 'allow';
  const gracePeriod = options.gracePeriod ?? DEFAULT_GRACE_PERIOD;
  const problems = [];
  if (!Number.isInteger(maxRunTime) || maxRunTime < 1 || maxRunTime > LIMIT_MAX_RUN_TIME) {
    problems.push({
      path: 'plugins.maxruntime.maxRunTime',
      message: `must be a whole number of seconds from 1 to ${LIMIT_MAX_RUN_TIME}`,
    });
  }
  if (!['require', 'allow', 'forbid'].includes(perTaskLimit)) {
    problems.push({ path: 'plugins.maxruntime.perTaskLimit', message: 'must be require, allow or forbid' });
  }
  if (typeof gracePeriod !== 'number' || !(gracePeriod >= 0) || gracePeriod > 3600) {
    problems.push({ path: 'plugins.maxruntime.gracePeriod', message: 'must be from 0 to 3600 seconds' });
  }
  if (problems.length) throw new ConfigError(problems);
  return { maxRunTime, perTaskLimit, gracePeriod };
}

/**
 * The maxruntime plugin: a task that runs longer than its `maxRunTime` (from the payload, capped by the config,
 * or the config's ceiling) is stopped — SIGTERM, then SIGKILL after the grace period — and resolves `failed`,
 * with a line saying why in its log. The clock starts when the sandbox starts (image pulls and other preparation
 * do not count) and stops when the task's process ends; uploads afterwards are not limited.
 */
export function maxruntime(options: MaxruntimeOptions = {}): PluginV1 {
  const config = check(options);
  const graceMs = Math.round(config.gracePeriod * 1000);
  return {
    specificationVersion: 'v1',
    name: 'maxruntime',
    coreRange: '^0.1.0',
    payloadSchema(): PayloadSchemaPart {
      if (config.perTaskLimit === 'forbid') {
        throw new FeatureNotSupportedError(
          'per-task maxRunTime',
          `tasks cannot set their own maximum run time on this worker (plugins.maxruntime.perTaskLimit is forbid); every task may run ${config.maxRunTime} s`,
          { keys: ['maxRunTime'] },
        );
      }
      return {
        properties: {
          maxRunTime: {
            type: 'integer',
            minimum: 1,
            maximum: config.maxRunTime,
            description: `Maximum run time of the task in seconds (at most ${config.maxRunTime}); when it is reached the task is stopped and fails`,
          },
        },
        ...(config.perTaskLimit === 'require' ? { required: ['maxRunTime'] } : {}),
      };
    },
    taskPlugin(context) {
      const seconds = (context.payload.maxRunTime as number | undefined) ?? config.maxRunTime;
      const graceful = context.engine.capabilities.gracefulAbort;
      let timer: NodeJS.Timeout | undefined;
      const clear = () => {
        clearTimeout(timer);
        timer = undefined;
      };
      return {
        started({ log, control, logger, signal, sandbox }) {
          log.info(`maxRunTime: ${seconds} s`);
          if (signal.aborted) return;
          timer = setTimeout(() => {
            timer = undefined;
            logger.info({ maxRunTime: seconds }, 'task exceeded its maxRunTime; stopping it');
            control
              .fail(overrunMessage(seconds, graceful, config.gracePeriod), { graceMs })
              .catch((error) => logger.error({ err: error }, 'could not stop the task at its maxRunTime'));
          }, seconds * 1000);
          timer.unref();
          signal.addEventListener('abort', clear, { once: true });
          // The clock stops when the task's process ends, not when our `stopped` hook comes (other plugins'
          // `stopped` hooks, artifact uploads say, may run first and take long).
          sandbox.wait().then(clear, clear);
        },
        stopped: () => {
          clear();
          return undefined;
        },
        exception: clear,
        dispose: clear,
      };
    },
  };
}
