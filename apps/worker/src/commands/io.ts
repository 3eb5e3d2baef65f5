import type { Writable } from 'node:stream';

/** Where a command writes: stdout for results (export lines, a taskId, a log), stderr for messages. */
export interface CommandIo {
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}

export const defaultIo = (): CommandIo => ({
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
});

/** Process exit codes of `tcw` (also in the README). */
export const EXIT = {
  ok: 0,
  /** tcw submit/run: the task failed */
  taskFailed: 1,
  /** tcw submit/run: the task ended in an exception */
  taskException: 2,
  /** bad command line or config (sysexits EX_USAGE) */
  usage: 64,
  /** the worker stopped itself after a fatal internal error (sysexits EX_SOFTWARE) */
  fatal: 69,
  /** tcw submit: the queue could not be reached or failed (network error, 5xx): try again later (EX_UNAVAILABLE) */
  unavailable: 69,
  /** the worker could not start: an engine or plugin refused (dockerd unreachable, …) (EX_OSERR-ish) */
  cannotStart: 70,
  /** the worker did not stop in time after an immediate stop and was forced out */
  forcedExit: 75,
} as const;
