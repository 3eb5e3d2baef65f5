import { TcwError } from './tcw-error.js';

/** An error thrown by a plugin hook, attributed to its plugin. `cause` is what the hook threw. */
export class PluginError extends TcwError {
  static readonly code = 'ERR_PLUGIN';
  readonly plugin: string;
  readonly hook: string;

  constructor(plugin: string, hook: string, cause: unknown) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    super(PluginError.code, `plugin ${plugin} failed in ${hook}: ${detail}`, { cause });
    this.plugin = plugin;
    this.hook = hook;
  }
}
