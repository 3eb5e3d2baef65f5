import { definePlugin } from '@tcw/core';
import { ENV_NAME_PATTERN, type EnvOptions, env } from './env.js';

export {
  composeEnv,
  ENV_NAME_PATTERN,
  type EnvOptions,
  env,
  envPayloadSchema,
  PROTECTED_NAMES,
  workerVariables,
} from './env.js';

/** The provider the `tcw` app loads for `plugins.env`. */
export default definePlugin<EnvOptions>({
  name: 'env',
  description:
    "Environment variables for the task: the run's identity, configured extras and the payload's env",
  coreRange: '^0.1.0',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      extra: {
        type: 'object',
        description:
          "Variables every task gets: they override the worker's own (except TASK_ID and RUN_ID, which cannot be set here) and the payload's env overrides them",
        propertyNames: { pattern: ENV_NAME_PATTERN },
        additionalProperties: { type: 'string' },
      },
    },
  },
  create: (config) => env(config),
});
