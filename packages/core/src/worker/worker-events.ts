import { EventEmitter } from 'node:events';
import type { Resolution } from '../errors/resolution.js';

export interface WorkerEventMap {
  /** The worker loop or a hook moved on (the watchdog resets on every one). */
  progress: [{ what: string }];
  /** A plugin hook began / ended (the watchdog says which one is stuck). */
  'hook-start': [{ plugin: string; hook: string; taskId: string }];
  'hook-end': [{ plugin: string; hook: string; taskId: string }];
  'task-claimed': [{ taskId: string; runId: number }];
  'task-resolved': [
    {
      taskId: string;
      runId: number;
      /** What was reported; undefined when the run was gone (cancelled, deadline, claim expired). */
      resolution: Resolution | undefined;
      fatal: boolean;
      /** Milliseconds per stage of the run (see `TaskRunOutcome.timings`). */
      timings: Record<string, number>;
    },
  ];
  /** No task has been running for `idleMs`. */
  idle: [{ idleMs: number }];
  /** An internal error (a task's `internal-error`, a failed claim, an upload the worker could not make). */
  'internal-error': [{ error: Error; fatal: boolean; taskId?: string }];
  stopping: [{ mode: 'graceful' | 'now'; reason: string }];
}

/** The worker's event bus; plugins get it as `lifecycle.events`. */
export class WorkerEvents extends EventEmitter<WorkerEventMap> {}
