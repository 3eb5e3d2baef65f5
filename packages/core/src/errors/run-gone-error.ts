import { TcwError, type TcwErrorOptions } from './tcw-error.js';

/**
 * The queue answered 409 (or the status shows the run resolved): the run was cancelled, passed its deadline or
 * its claim expired. The worker stops the task at once and does not resolve it.
 */
export class RunGoneError extends TcwError {
  static readonly code = 'ERR_RUN_GONE';

  constructor(message: string, options: TcwErrorOptions = {}) {
    super(RunGoneError.code, message, options);
  }

  static isRunGone(error: unknown): error is RunGoneError {
    return TcwError.hasCode(error, RunGoneError.code);
  }
}
