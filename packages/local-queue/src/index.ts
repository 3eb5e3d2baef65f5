export type { ScopeExpr } from './auth.js';
export { runQueueCommand } from './cli.js';
export {
  DEFAULT_ANONYMOUS_SCOPES,
  type FaultSpec,
  type InProcessClient,
  type InProcessCredentials,
  type LocalQueue,
  type LocalQueueClientConfig,
  type LocalQueueConfig,
  type LocalQueueLogger,
  type LocalQueueOptions,
  type LocalQueueService,
  type LocalQueueWorkerConfig,
  startLocalQueue,
} from './local-queue.js';
export { startLocalQueueThread } from './thread.js';
export { suppressSqliteExperimentalWarning } from './warnings.js';
