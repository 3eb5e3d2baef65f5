import type { Logger } from '@tcw/core';
import pino from 'pino';
import pretty from 'pino-pretty';

export interface LoggerOptions {
  level?: string;
  /** Human-readable output; default: when stderr is a terminal. */
  pretty?: boolean;
}

/** pino on stderr: JSON lines, or readable lines when stderr is a terminal. */
export function createLogger(options: LoggerOptions = {}): Logger & pino.Logger {
  const level = options.level ?? process.env.TCW_LOG_LEVEL ?? 'info';
  const readable = options.pretty ?? Boolean(process.stderr.isTTY);
  const base = { name: 'tcw' };
  if (readable) {
    return pino(
      { level, base },
      pretty({
        destination: 2,
        sync: true,
        colorize: Boolean(process.stderr.isTTY),
        ignore: 'pid,hostname,name',
      }),
    ) as Logger & pino.Logger;
  }
  return pino({ level, base }, pino.destination({ dest: 2, sync: true })) as Logger & pino.Logger;
}

/**
 * The local queue logs `(message, details)`; pino takes `(details, message)`. This keeps the details (method,
 * route, status) as fields of the JSON line instead of dropping them.
 */
export function messageFirstLogger(target: Logger) {
  const level =
    (name: 'debug' | 'info' | 'warn' | 'error') =>
    (message: unknown, ...rest: unknown[]) => {
      const [details] = rest;
      if (details instanceof Error) target[name]({ err: details }, String(message));
      else if (details && typeof details === 'object') target[name](details as object, String(message));
      else target[name](String(message));
    };
  return { debug: level('debug'), info: level('info'), warn: level('warn'), error: level('error') };
}
