import { TcwError } from './tcw-error.js';

/** One bad configuration value, by its path (`engines.script.command`, `plugins.livelog.port`). */
export interface ConfigProblem {
  path: string;
  message: string;
}

/** Invalid configuration, found at startup: the worker refuses to start and names every bad key. */
export class ConfigError extends TcwError {
  static readonly code = 'ERR_CONFIG';
  readonly problems: readonly ConfigProblem[];

  constructor(problems: ConfigProblem[] | string) {
    const list = typeof problems === 'string' ? [{ path: '', message: problems }] : problems;
    super(ConfigError.code, list.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)).join('\n'));
    this.problems = list;
  }
}
