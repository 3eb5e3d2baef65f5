import { TcwError } from './tcw-error.js';

/**
 * A plugin hook did not settle within the configured hook timeout, and did not report progress (`progress()`) in
 * that time either. Treated as fatal: the worker stops.
 */
export class HookTimeoutError extends TcwError {
  static readonly code = 'ERR_HOOK_TIMEOUT';
  readonly plugin: string;
  readonly hook: string;

  constructor(plugin: string, hook: string, timeoutMs: number) {
    super(
      HookTimeoutError.code,
      `plugin ${plugin} did not finish ${hook} within ${timeoutMs} ms, nor report progress in that time`,
    );
    this.plugin = plugin;
    this.hook = hook;
  }
}
