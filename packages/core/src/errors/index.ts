export { ConfigError, type ConfigProblem } from './config-error.js';
export { FatalError } from './fatal-error.js';
export { FeatureNotSupportedError } from './feature-not-supported-error.js';
export { HookTimeoutError } from './hook-timeout-error.js';
export { IncompatibleExtensionError } from './incompatible-error.js';
export { InternalError } from './internal-error.js';
export { MalformedPayloadError, type PayloadProblem } from './malformed-payload-error.js';
export { PayloadKeyConflictError } from './payload-key-conflict-error.js';
export { PluginError } from './plugin-error.js';
export {
  type AbortReason,
  describeResolution,
  type ErrorOutcome,
  type ExceptionReason,
  errorOutcome,
  type Resolution,
} from './resolution.js';
export { ResourceUnavailableError } from './resource-unavailable-error.js';
export { RunGoneError } from './run-gone-error.js';
export { TcwError, type TcwErrorOptions } from './tcw-error.js';
