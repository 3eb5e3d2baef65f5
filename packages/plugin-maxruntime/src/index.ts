import { definePlugin } from '@tcw/core';
import { LIMIT_MAX_RUN_TIME, type MaxruntimeOptions, maxruntime } from './maxruntime.js';

export {
  DEFAULT_GRACE_PERIOD,
  DEFAULT_MAX_RUN_TIME,
  LIMIT_MAX_RUN_TIME,
  type MaxruntimeOptions,
  maxruntime,
  overrunMessage,
  type PerTaskLimit,
} from './maxruntime.js';

/** The provider the `tcw` app loads for `plugins.maxruntime`. */
export default definePlugin<MaxruntimeOptions>({
  name: 'maxruntime',
  description:
    'A maximum run time per task (payload maxRunTime, capped by the config); an overrun task fails',
  coreRange: '^0.1.0',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      maxRunTime: {
        type: 'integer',
        minimum: 1,
        maximum: LIMIT_MAX_RUN_TIME,
        description:
          'The ceiling in seconds: no task runs longer; tasks that set no maxRunTime get this (default 86400)',
      },
      perTaskLimit: {
        enum: ['require', 'allow', 'forbid'],
        description:
          'Whether the payload must (require), may (allow, the default) or cannot (forbid) set maxRunTime',
      },
      gracePeriod: {
        type: 'number',
        minimum: 0,
        maximum: 3600,
        description: 'Seconds between SIGTERM and SIGKILL when a task runs out of time (default 10)',
      },
    },
  },
  create: (config) => maxruntime(config),
});
