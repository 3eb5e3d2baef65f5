import {
  ConfigError,
  type JSONSchema,
  MalformedPayloadError,
  type PayloadProblem,
  type PluginV1,
  type TaskInfo,
} from '@tcw/core';

/** The config, as YAML under `plugins.env`. */
export interface EnvOptions {
  /** Variables every task gets (after the worker's own, before the payload's `env`). */
  extra?: Record<string, string>;
}

/** What an environment variable name may look like (POSIX portable names). */
export const ENV_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_]*$';

/** Variables the worker sets that a task may not override: they identify the run. */
export const PROTECTED_NAMES: readonly string[] = ['TASK_ID', 'RUN_ID'];

/** The schema of the payload's `env` key. */
export const envPayloadSchema: JSONSchema = {
  type: 'object',
  description:
    'Environment variables of the task. They override the worker-wide ones, except TASK_ID and RUN_ID, ' +
    'which a task cannot set.',
  propertyNames: { pattern: ENV_NAME_PATTERN },
  additionalProperties: { type: 'string' },
};

/** The variables the worker sets for every task, from the run's identity. */
export function workerVariables(info: TaskInfo): Record<string, string> {
  return {
    TASK_ID: info.taskId,
    RUN_ID: String(info.runId),
    TASK_GROUP_ID: info.task.taskGroupId,
    TASKCLUSTER_ROOT_URL: info.rootUrl,
    TASKCLUSTER_WORKER_GROUP: info.worker.workerGroup,
    TASKCLUSTER_WORKER_ID: info.worker.workerId,
    TASKCLUSTER_TASK_QUEUE_ID: info.worker.taskQueueId,
  };
}

/**
 * The task's environment: the worker's variables, then the configured `extra`, then the payload's `env` (later
 * wins). A payload that sets `TASK_ID` or `RUN_ID` is refused (`MalformedPayloadError` naming `/env/<NAME>`):
 * silently ignoring it would leave the task author thinking the value took effect.
 */
export function composeEnv(
  info: TaskInfo,
  extra: Record<string, string>,
  payloadEnv: Record<string, string> | undefined,
): Record<string, string> {
  const problems: PayloadProblem[] = [];
  for (const name of PROTECTED_NAMES) {
    if (payloadEnv && Object.hasOwn(payloadEnv, name)) {
      problems.push({
        pointer: `/env/${name}`,
        message: `${name} is set by the worker (it identifies the run) and cannot be overridden by the task`,
      });
    }
  }
  if (problems.length) throw new MalformedPayloadError(problems);
  return { ...workerVariables(info), ...extra, ...payloadEnv };
}

/**
 * The env plugin: sets the task's environment variables in `buildSandbox`. On an engine without the `env`
 * capability its `env` payload key does not exist, and it sets nothing.
 */
export function env(options: EnvOptions = {}): PluginV1 {
  const extra = { ...options.extra };
  const badName = Object.keys(extra).find((name) => !new RegExp(ENV_NAME_PATTERN).test(name));
  if (badName !== undefined) {
    throw new ConfigError([
      { path: `plugins.env.extra.${badName}`, message: 'not a valid environment variable name' },
    ]);
  }
  const fixed = PROTECTED_NAMES.find((name) => Object.hasOwn(extra, name));
  if (fixed !== undefined) {
    throw new ConfigError([
      { path: `plugins.env.extra.${fixed}`, message: `${fixed} is set by the worker for each run` },
    ]);
  }
  return {
    specificationVersion: 'v1',
    name: 'env',
    coreRange: '^0.1.0',
    requires: ['env'],
    payloadSchema: () => ({ properties: { env: envPayloadSchema } }),
    init({ engine, logger }) {
      if (!engine.capabilities.env) {
        logger.warn(
          { engine: engine.name, extra: Object.keys(extra) },
          `the ${engine.name} engine cannot set environment variables: the env plugin sets none, and tasks cannot use the env payload key`,
        );
      }
    },
    taskPlugin(context) {
      if (!context.engine.capabilities.env) return undefined;
      const payloadEnv = context.payload.env as Record<string, string> | undefined;
      // Checked at creation, before any other plugin prepares anything for a task that will be refused.
      const vars = composeEnv(context.task, extra, payloadEnv);
      return {
        buildSandbox({ builder }) {
          for (const [name, value] of Object.entries(vars)) builder.setEnv(name, value);
        },
      };
    },
  };
}
