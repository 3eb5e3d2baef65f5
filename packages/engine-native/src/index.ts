import { defineEngine } from '@tcw/core';
import { createNativeEngine, type NativeEngineOptions } from './native-engine.js';

export type { TaskLimits } from './cgroups.js';
export { createNativeEngine, type NativeEngineOptions, proxyEnvName } from './native-engine.js';

/** The provider the `tcw` app loads for `engine: native`. */
export default defineEngine<NativeEngineOptions>({
  name: 'native',
  description:
    'Task commands as host processes: a fresh directory (and user) per task, no process outliving its task',
  coreRange: '^0.1.0',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      user: {
        type: 'string',
        minLength: 1,
        description:
          '`current` (the worker user), `per-task` (a fresh user per task; Linux, root) or an existing user name. Default: per-task as root on Linux, else current',
      },
      allowRoot: { type: 'boolean', description: 'Let tasks run as root (default false)' },
      tasksDir: {
        type: 'string',
        minLength: 1,
        description:
          'Where task directories go (default: /home for per-task users, else <workDir>/native-tasks)',
      },
      keepTaskDirs: {
        type: 'boolean',
        description: 'Keep task directories after their task (default false)',
      },
      env: {
        type: 'object',
        additionalProperties: { type: 'string' },
        description: "Base environment of every task (default: the worker's PATH only)",
      },
      killGracePeriod: {
        type: 'number',
        minimum: 0,
        description:
          'Seconds between SIGTERM and SIGKILL for processes left when the commands are done (default 5)',
      },
      cgroups: {
        enum: ['auto', 'off'],
        description:
          '`auto` (default): a cgroup per task where the host allows it; `off`: process groups only',
      },
      limits: {
        type: 'object',
        additionalProperties: false,
        description:
          'Per-task limits through cgroups (the worker refuses to start if the host cannot apply them)',
        properties: {
          memory: { type: 'integer', minimum: 1048576, description: 'Memory limit in bytes' },
          pids: { type: 'integer', minimum: 1, description: 'Most processes and threads at once' },
        },
      },
    },
  },
  create: (config) => createNativeEngine(config),
});
