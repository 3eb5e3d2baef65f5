import { definePlugin } from '@tcw/core';
import { type LogprefixOptions, logprefix } from './logprefix.js';

export { BUILTIN_KEYS, type LogprefixOptions, logprefix, prefixLines } from './logprefix.js';

/** The provider the `tcw` app loads for `plugins.logprefix`. */
export default definePlugin<LogprefixOptions>({
  name: 'logprefix',
  description:
    'Prints the task and worker identity, the tcw core version and configured values at the top of every task log',
  coreRange: '^0.1.0',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      values: {
        type: 'object',
        description: 'Extra `key: value` lines for the top of every task log, in this order',
        propertyNames: { pattern: '^[A-Za-z0-9_.-]+$' },
        additionalProperties: { type: ['string', 'number', 'boolean'] },
      },
    },
  },
  create: (config) => logprefix(config),
});
