import { ConfigError, type PluginV1 } from '@tcw/core';

/** The config, as YAML under `plugins.logprefix`. */
export interface LogprefixOptions {
  /** Extra `key: value` lines printed at the top of every task log (e.g. an image version, a cloud region). */
  values?: Record<string, string | number | boolean>;
}

/** Keys the plugin prints itself; a configured value may not pose as one of them. */
export const BUILTIN_KEYS: readonly string[] = [
  'taskId',
  'runId',
  'workerGroup',
  'workerId',
  'taskQueueId',
  'tcwCoreVersion',
  'tasksSinceStart',
];

const KEY_PATTERN = /^[A-Za-z0-9_.-]+$/;

/** What one task's log starts with, as `key: value` pairs in print order. */
export function prefixLines(entries: ReadonlyArray<readonly [string, string]>): string[] {
  const width = Math.max(...entries.map(([k]) => k.length));
  return entries.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${v}`);
}

/**
 * The logprefix plugin: writes the task's and worker's identity, the @tcw/core version, how many tasks this
 * worker has run, and the configured values, as the first worker lines of every task log. It runs in the `pre`
 * tier and writes when its task plugin is created, before any other plugin's hooks.
 */
export function logprefix(options: LogprefixOptions = {}): PluginV1 {
  const values = Object.entries(options.values ?? {});
  for (const [key, value] of values) {
    if (!KEY_PATTERN.test(key)) {
      throw new ConfigError([
        { path: `plugins.logprefix.values.${key}`, message: 'keys are letters, digits, "_", "." and "-"' },
      ]);
    }
    if (BUILTIN_KEYS.includes(key)) {
      throw new ConfigError([
        { path: `plugins.logprefix.values.${key}`, message: `${key} is printed by the plugin itself` },
      ]);
    }
    if (typeof value === 'string' && /[\r\n]/.test(value)) {
      throw new ConfigError([
        { path: `plugins.logprefix.values.${key}`, message: 'a value must fit on one line' },
      ]);
    }
  }
  let coreVersion = 'unknown';
  let tasks = 0;
  return {
    specificationVersion: 'v1',
    name: 'logprefix',
    enforce: 'pre',
    coreRange: '^0.1.0',
    init(context) {
      coreVersion = context.coreVersion;
    },
    taskPlugin({ task, log }) {
      tasks++;
      const lines = prefixLines([
        ['taskId', task.taskId],
        ['runId', String(task.runId)],
        ['workerGroup', task.worker.workerGroup],
        ['workerId', task.worker.workerId],
        ['taskQueueId', task.worker.taskQueueId],
        ['tcwCoreVersion', coreVersion],
        ['tasksSinceStart', String(tasks)],
        ...values.map(([k, v]) => [k, String(v)] as const),
      ]);
      for (const line of lines) log.info(line);
      return undefined;
    },
  };
}
