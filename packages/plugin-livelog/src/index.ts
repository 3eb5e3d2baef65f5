import { definePlugin } from '@tcw/core';
import { type LivelogOptions, livelog } from './livelog-plugin.js';

export {
  LIVE_LOG_NAME,
  type LivelogOptions,
  type LivelogPlugin,
  livelog,
  parseListen,
} from './livelog-plugin.js';

/** The provider the `tcw` app loads for `plugins.livelog`. */
export default definePlugin<LivelogOptions>({
  name: 'livelog',
  description: "Serves each task's log live over HTTP behind public/logs/live.log",
  coreRange: '^0.1.0',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      listen: {
        type: 'string',
        pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\[\\]]+):[0-9]{1,5}$',
        description: 'host:port the log server listens on (default 127.0.0.1:0: loopback, a free port)',
      },
      lingerMs: {
        type: 'integer',
        minimum: 0,
        description:
          "How long readers still reading a finished task's log may go on once the task is done (default 60000)",
      },
      publicUrl: {
        type: 'string',
        format: 'uri',
        description: 'Base URL readers use to reach the log server (default: http://<listen host>:<port>)',
      },
    },
  },
  create: (config) => livelog(config),
});
