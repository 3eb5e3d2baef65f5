import { TcwError } from './tcw-error.js';

/**
 * An engine lacks a capability a plugin needs. Raised from `payloadSchema()` it removes the plugin's payload keys
 * from the composed schema ("this payload key does not exist on this worker"); raised at run time it is a bug.
 */
export class FeatureNotSupportedError extends TcwError {
  static readonly code = 'ERR_FEATURE_NOT_SUPPORTED';
  readonly feature: string;
  /**
   * The payload keys this removes, when the contributor cannot list them itself (a plugin whose config, not the
   * engine, leaves a key out): the refusal message then names the reason.
   */
  readonly keys: readonly string[];

  constructor(feature: string, message?: string, options: { keys?: readonly string[] } = {}) {
    super(FeatureNotSupportedError.code, message ?? `feature not supported by this engine: ${feature}`);
    this.feature = feature;
    this.keys = options.keys ?? [];
  }

  static isFeatureNotSupported(error: unknown): error is FeatureNotSupportedError {
    return TcwError.hasCode(error, FeatureNotSupportedError.code);
  }
}
