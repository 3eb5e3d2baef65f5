// @tcw/worker — programmatic access to what the `tcw` command does.

export { EXIT } from './commands/io.js';
export { type StartedWorker, type StartOptions, startWorker } from './commands/start.js';
export {
  BUNDLED_ENGINES,
  BUNDLED_PLUGINS,
  type Composition,
  compose,
  DEFAULT_PLUGINS,
  enabledPluginNames,
} from './compose.js';
export { fromObject, type LoadedConfig, loadConfig, type WorkerConfig } from './config/load.js';
export { workerConfigSchema } from './config/schema.js';
export { exitCodeFor, type FinalState, type FollowResult, followTask } from './follow.js';
export { createLogger } from './logger.js';
export { VERSION } from './version.js';
