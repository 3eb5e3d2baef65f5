import { defineEngine } from '@tcw/core';
import { createScriptEngine, type ScriptEngineOptions } from './script-engine.js';

export { createScriptEngine, EXIT_CODES, type ScriptEngineOptions } from './script-engine.js';

/** The provider the `tcw` app loads for `engine: script`. */
export default defineEngine<ScriptEngineOptions>({
  name: 'script',
  description:
    'Declarative tasks: a configured script receives the payload as JSON (tasks send data, never commands)',
  coreRange: '^0.1.0',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['command', 'schema'],
    properties: {
      command: {
        type: 'array',
        minItems: 1,
        items: { type: 'string', minLength: 1 },
        description:
          'The command run for every task (argv, no shell). A first element starting with ./ is relative to the config file.',
      },
      schema: {
        type: 'object',
        required: ['type'],
        properties: { type: { const: 'object' } },
        description: 'JSON schema of the payload; its root must be `type: object`',
      },
      env: {
        type: 'object',
        additionalProperties: { type: 'string' },
        description: "Environment of the script besides TASK_ID and RUN_ID (default: the worker's PATH only)",
      },
      tasksDir: {
        type: 'string',
        description: "Where per-task folders are made (default: the worker's work dir)",
      },
      baseDir: {
        type: 'string',
        description: 'Base for relative command paths (set by the app: the config folder)',
      },
    },
  },
  create: (config) => createScriptEngine(config),
});
