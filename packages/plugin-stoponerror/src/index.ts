import { definePlugin } from '@tcw/core';
import { type StoponerrorOptions, stoponerror } from './stoponerror.js';

export { type StoponerrorOptions, stoponerror } from './stoponerror.js';

/** The provider the `tcw` app loads for `plugins.stoponerror`. */
export default definePlugin<StoponerrorOptions>({
  name: 'stoponerror',
  description: 'Stops the worker gracefully after a non-fatal internal error',
  coreRange: '^0.1.0',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      includeWorkerErrors: {
        type: 'boolean',
        description:
          'Also stop on internal errors outside any task (a failed claimWork, otherwise retried); default false',
      },
    },
  },
  create: (config) => stoponerror(config),
});
