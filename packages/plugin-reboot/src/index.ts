import { definePlugin } from '@tcw/core';
import { LIMIT_LIFETIME, type RebootOptions, reboot } from './reboot.js';

export { LIMIT_LIFETIME, type RebootOptions, reboot, type TaskReboot, wantsReboot } from './reboot.js';
export { type CommandResult, runCommand } from './run-command.js';

/** The provider the `tcw` app loads for `plugins.reboot`. */
export default definePlugin<RebootOptions>({
  name: 'reboot',
  description:
    'Stops the worker after N tasks, after a lifetime or when a task asks, then runs a configured command',
  coreRange: '^0.1.0',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      maxTasks: {
        type: 'integer',
        minimum: 1,
        description: 'Stop once this many tasks have been claimed (they finish first)',
      },
      maxLifetime: {
        type: 'number',
        exclusiveMinimum: 0,
        maximum: LIMIT_LIFETIME,
        description: 'Stop this many seconds after the worker started (running tasks finish first)',
      },
      allowTaskReboots: {
        type: 'boolean',
        description: 'Whether a task may ask for a reboot with payload `reboot` (default false)',
      },
      rebootCommand: {
        type: 'array',
        minItems: 1,
        items: { type: 'string', minLength: 1 },
        description:
          'argv run (no shell) after the worker stopped for one of these reasons, e.g. [sudo, /sbin/reboot]; default: none, the worker just exits',
      },
    },
  },
  create: (config) => reboot(config),
});
