/**
 * The logger every part of tcw writes to. Core only defines the interface; the `tcw` app provides pino. Fields
 * go first (pino's order): `logger.info({taskId}, 'claimed')`.
 */
export interface Logger {
  debug(fields: object, message?: string): void;
  debug(message: string): void;
  info(fields: object, message?: string): void;
  info(message: string): void;
  warn(fields: object, message?: string): void;
  warn(message: string): void;
  error(fields: object, message?: string): void;
  error(message: string): void;
  child(bindings: object): Logger;
}

/** A logger that drops everything (the default in tests and for library users who pass none). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
