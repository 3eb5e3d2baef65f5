import { TcwError } from './tcw-error.js';

/** A plugin or engine was built for another @tcw/core contract version or range. */
export class IncompatibleExtensionError extends TcwError {
  static readonly code = 'ERR_INCOMPATIBLE_EXTENSION';

  constructor(message: string) {
    super(IncompatibleExtensionError.code, message);
  }
}
