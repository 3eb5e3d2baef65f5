import { TcwError, type TcwErrorOptions } from './tcw-error.js';

/** Our own fault, not the task's: the task resolves exception `internal-error` and the worker goes on. */
export class InternalError extends TcwError {
  static readonly code = 'ERR_INTERNAL';

  constructor(message: string, options: TcwErrorOptions = {}) {
    super(InternalError.code, message, options);
  }
}
