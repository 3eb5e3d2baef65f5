import { mkdir, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger, PluginV1, TaskPluginV1 } from '@tcw/core';
import type { MockEngine } from '@tcw/testing';

/** A logger that keeps every record, for assertions on what the worker logged. */
export function recordingLogger(records: Array<{ level: string; fields: object; message?: string }>): Logger {
  const make = (bindings: object): Logger => {
    const at =
      (level: string) =>
      (fields: object | string, message?: string): void => {
        if (typeof fields === 'string') records.push({ level, fields: bindings, message: fields });
        else records.push({ level, fields: { ...bindings, ...fields }, ...(message ? { message } : {}) });
      };
    return {
      debug: at('debug'),
      info: at('info'),
      warn: at('warn'),
      error: at('error'),
      child: (more) => make({ ...bindings, ...more }),
    };
  };
  return make({});
}

/**
 * A helper plugin for tests: it creates symlinks in the mock sandbox's directory before the task starts (the
 * mock engine's payload can only write regular files).
 */
export function symlinker(engine: MockEngine, links: Record<string, string>): PluginV1 {
  return {
    specificationVersion: 'v1',
    name: 'test-symlinks',
    taskPlugin(): TaskPluginV1 {
      return {
        async buildSandbox() {
          const dir = engine.sandboxes.at(-1)?.dir;
          if (!dir) throw new Error('no sandbox yet');
          for (const [path, target] of Object.entries(links)) {
            await mkdir(dirname(join(dir, path)), { recursive: true });
            await symlink(target, join(dir, path));
          }
        },
      };
    },
  };
}

/** A helper plugin that calls a function when the task has started. */
export function onStarted(
  fn: (ctx: Parameters<NonNullable<TaskPluginV1['started']>>[0]) => unknown,
): PluginV1 {
  return {
    specificationVersion: 'v1',
    name: 'test-started',
    taskPlugin: () => ({
      async started(ctx) {
        await fn(ctx);
      },
    }),
  };
}
