import { definePlugin } from '@tcw/core';
import { type WatchdogOptions, watchdog } from './watchdog.js';

export {
  DEFAULT_FORCE_EXIT_AFTER,
  DEFAULT_TIMEOUT,
  FORCE_EXIT_CODE,
  type WatchdogHooks,
  type WatchdogOptions,
  watchdog,
} from './watchdog.js';

/** The provider the `tcw` app loads for `plugins.watchdog`. */
export default definePlugin<WatchdogOptions>({
  name: 'watchdog',
  description: 'Stops the worker when its loop or a plugin hook makes no progress for too long',
  coreRange: '^0.1.0',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      timeout: {
        type: 'number',
        exclusiveMinimum: 0,
        maximum: 2_000_000,
        description:
          'Seconds without progress of the worker loop or of one hook before the worker is stopped (default 2700)',
      },
      forceExitAfter: {
        type: 'number',
        minimum: 0,
        maximum: 86_400,
        description:
          'Seconds the stopped worker gets to end by itself before the process exits with code 75; 0 = never (default 60)',
      },
    },
  },
  create: (config) => watchdog(config),
});
