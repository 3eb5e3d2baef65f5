import { ConfigError, type PluginV1, type TaskPluginV1 } from '@tcw/core';
import { type ArtifactSpec, artifactsPayloadSchema, checkSpecs } from './artifact-spec.js';
import { uploadArtifacts } from './upload-artifacts.js';

/** The config, as YAML under `plugins.artifacts`. */
export interface ArtifactsOptions {
  /** At most this many uploads of one task at once (default 5). */
  uploadConcurrency?: number;
}

/**
 * The artifacts plugin: once the task's process has ended (also when it failed or hit its max run time, never
 * when it was cancelled), uploads the files and folders named in the payload's `artifacts` as `object` artifacts
 * through the worker's one upload path.
 */
export function artifacts(options: ArtifactsOptions = {}): PluginV1 {
  const concurrency = options.uploadConcurrency ?? 5;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new ConfigError([
      {
        path: 'plugins.artifacts.uploadConcurrency',
        message: `must be a positive integer, got ${concurrency}`,
      },
    ]);
  }
  return {
    specificationVersion: 'v1',
    name: 'artifacts',
    coreRange: '^0.1.0',
    requires: ['extract'],
    payloadSchema: () => artifactsPayloadSchema,
    taskPlugin(context): TaskPluginV1 | undefined {
      const list = context.payload.artifacts as ArtifactSpec[] | undefined;
      if (!list || list.length === 0 || !context.engine.capabilities.extract) return undefined;
      const specs = checkSpecs(list, { deadline: context.task.task.deadline });
      return {
        async stopped({ result, artifacts: uploader, log, logger, signal }) {
          const outcome = await uploadArtifacts({
            specs,
            result,
            uploader,
            log,
            logger,
            concurrency,
            signal,
          });
          return outcome.ok ? undefined : false;
        },
      };
    },
  };
}
