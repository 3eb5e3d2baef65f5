import type { ResultSetV1 } from './result-set.js';

export interface AbortOptions {
  /** Time between the polite signal (SIGTERM or the engine's equivalent) and the kill. 0 = kill at once. */
  graceMs?: number;
}

/**
 * Phase 2: a running sandbox. Its configuration can no longer change. The engine streams the task's output into
 * the task log it was given (`SandboxOptions.log`) while it runs.
 */
export interface SandboxV1 {
  readonly specificationVersion: 'v1';
  /** The result, once the task's process has ended. Idempotent: always the same ResultSet. */
  wait(): Promise<ResultSetV1>;
  /**
   * Ends the task: the polite signal, then the kill after the grace period, for every process of the task.
   * Idempotent; resolves once everything is gone. `wait()` then resolves with `aborted: true`, `success: false`.
   */
  abort(options?: AbortOptions): Promise<void>;
}
