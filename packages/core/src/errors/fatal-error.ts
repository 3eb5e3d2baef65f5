import { TcwError, type TcwErrorOptions } from './tcw-error.js';

/**
 * Our fault, and the worker should not take more work: the task resolves exception `internal-error`, then the
 * worker stops gracefully (a supervisor restarts or resets the machine).
 */
export class FatalError extends TcwError {
  static readonly code = 'ERR_FATAL';

  constructor(message: string, options: TcwErrorOptions = {}) {
    super(FatalError.code, message, options);
  }
}
