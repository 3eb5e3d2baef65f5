const marker = Symbol.for('tcw.error');

export interface TcwErrorOptions {
  cause?: unknown;
}

/**
 * Base class of every error tcw raises on purpose. `code` is stable and documented (docs/errors.md); detection goes
 * through `TcwError.isInstance()` / `hasCode()` rather than `instanceof`, so it also works when a plugin brings its
 * own copy of @tcw/core.
 */
export class TcwError extends Error {
  readonly [marker] = true;
  readonly code: string;

  constructor(code: string, message: string, options: TcwErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }

  static isInstance(error: unknown): error is TcwError {
    return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[marker] === true;
  }

  static hasCode(error: unknown, code: string): boolean {
    return TcwError.isInstance(error) && error.code === code;
  }
}
