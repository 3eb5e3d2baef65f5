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
