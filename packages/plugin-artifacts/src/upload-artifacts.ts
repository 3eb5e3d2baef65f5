import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import {
  type ArtifactCommon,
  type ArtifactUploader,
  createLimiter,
  type ExtractedFile,
  InternalError,
  type Logger,
  MalformedPayloadError,
  type PayloadProblem,
  ResourceUnavailableError,
  type ResultSetV1,
  RunGoneError,
  silentLogger,
  type TaskLogWriter,
  type UploadedArtifact,
} from '@tcw/core';
import { type CheckedSpec, RESERVED_NAMES } from './artifact-spec.js';

export interface UploadArtifactsOptions {
  specs: readonly CheckedSpec[];
  result: Pick<ResultSetV1, 'extractFile' | 'extractFolder'>;
  uploader: ArtifactUploader;
  log: TaskLogWriter;
  logger?: Logger;
  /** At most this many uploads of this task at once (default 5). */
  concurrency?: number;
  /** When aborted, no new upload starts. */
  signal?: AbortSignal;
}

export interface UploadArtifactsOutcome {
  uploaded: UploadedArtifact[];
  /** Names that became `error` artifacts. */
  errors: Array<{ name: string; reason: string }>;
  /** False when a non-optional artifact is missing or unusable: the task fails. */
  ok: boolean;
}

function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** An upload error that says the service is out of reach rather than that we did something wrong. */
function isOutage(error: unknown): boolean {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  if (typeof status === 'number') return status >= 500;
  const code = errnoCode(error);
  return (
    code !== undefined && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN', 'EPIPE'].includes(code)
  );
}

/** Closes a stream we will not read (its file is read in place, or not at all), ignoring its late errors. */
function discard(stream: Readable): void {
  stream.on('error', () => {});
  stream.destroy();
}

function describeSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * Uploads the artifacts a task named, from the engine's result set, so that it works with any engine that can
 * extract files. Files on the host are read in place; streams from other engines are spooled by the uploader.
 * Missing files become `error` artifacts (`file-missing-on-worker`) and fail the task unless `optional`; a path
 * that leaves the sandbox is a malformed payload naming its JSON pointer (thrown after every other artifact is
 * uploaded); a symlink inside a folder that leaves the sandbox becomes an `invalid-resource-on-worker` error
 * artifact. Upload errors that survive the uploader's retries make the task an exception.
 */
export async function uploadArtifacts(options: UploadArtifactsOptions): Promise<UploadArtifactsOutcome> {
  const { specs, result, uploader, log } = options;
  const logger = options.logger ?? silentLogger;
  const limit = createLimiter(options.concurrency ?? 5);
  const outcome: UploadArtifactsOutcome = { uploaded: [], errors: [], ok: true };
  const problems: PayloadProblem[] = [];
  const failures: Array<{ name: string; error: unknown }> = [];
  let runGone: unknown;
  const jobs: Promise<void>[] = [];

  const errorArtifact = async (
    spec: CheckedSpec,
    name: string,
    reason: 'file-missing-on-worker' | 'invalid-resource-on-worker',
    message: string,
  ) => {
    outcome.errors.push({ name, reason });
    log.error(`Artifact ${name}: ${message}`);
    try {
      await uploader.createError(name, reason, message, spec.expires);
    } catch (error) {
      if (RunGoneError.isRunGone(error)) runGone ??= error;
      else failures.push({ name, error });
    }
  };

  const upload = async (spec: CheckedSpec, name: string, file: ExtractedFile, useSpecType: boolean) => {
    if (runGone || options.signal?.aborted) {
      discard(file.stream);
      return;
    }
    const common: ArtifactCommon = {
      name,
      ...(spec.expires !== undefined ? { expires: spec.expires } : {}),
      ...(useSpecType && spec.contentType !== undefined ? { contentType: spec.contentType } : {}),
      gzip: spec.contentEncoding === undefined ? 'auto' : spec.contentEncoding === 'gzip',
    };
    try {
      let done: UploadedArtifact;
      if (file.hostPath) {
        discard(file.stream);
        done = await uploader.uploadFile({ ...common, path: file.hostPath });
      } else {
        done = await uploader.uploadStream({ ...common, stream: file.stream });
      }
      outcome.uploaded.push(done);
      log.info(
        `Uploaded artifact ${name} (${describeSize(done.size)}, ${done.contentType}` +
          `${done.contentEncoding === 'gzip' ? ', gzip' : ''})`,
      );
    } catch (error) {
      if (RunGoneError.isRunGone(error)) runGone ??= error;
      else {
        logger.error({ err: error, artifact: name }, 'artifact upload failed');
        failures.push({ name, error });
      }
    }
  };

  /** Schedules an upload; resolves once it has started (so a folder walk never runs far ahead of the uploads). */
  const schedule = (fn: () => Promise<void>) =>
    new Promise<void>((started) => {
      jobs.push(
        limit(async () => {
          started();
          await fn();
        }),
      );
    });

  const unusable = (spec: CheckedSpec, error: unknown): boolean => {
    if (MalformedPayloadError.isMalformedPayload(error)) {
      const message = error.problems.map((p) => p.message).join('; ');
      problems.push({ pointer: `/artifacts/${spec.index}/path`, message });
      jobs.push(errorArtifact(spec, spec.name, 'invalid-resource-on-worker', message));
      return true;
    }
    const code = errnoCode(error);
    if (code === 'ENOENT') {
      jobs.push(
        errorArtifact(
          spec,
          spec.name,
          'file-missing-on-worker',
          `${spec.type === 'directory' ? 'folder' : 'file'} ${JSON.stringify(spec.path)} was not found` +
            (spec.optional ? ' (optional)' : ''),
        ),
      );
      if (!spec.optional) outcome.ok = false;
      return true;
    }
    if (code === 'ENOTDIR' || code === 'EISDIR') {
      jobs.push(
        errorArtifact(
          spec,
          spec.name,
          'invalid-resource-on-worker',
          code === 'ENOTDIR'
            ? `${JSON.stringify(spec.path)} is not a folder (use type: file)`
            : `${JSON.stringify(spec.path)} is a folder (use type: directory)`,
        ),
      );
      outcome.ok = false;
      return true;
    }
    return false;
  };

  for (const spec of specs) {
    if (runGone || options.signal?.aborted) break;
    try {
      if (spec.type === 'file') {
        if (!result.extractFile) throw new InternalError('the engine cannot extract files');
        const file = await result.extractFile(spec.path);
        if (file.hostPath && (await stat(file.hostPath)).isDirectory()) {
          discard(file.stream);
          throw Object.assign(new Error(`${spec.path} is a folder`), { code: 'EISDIR' });
        }
        await schedule(() => upload(spec, spec.name, file, true));
      } else {
        if (!result.extractFolder) throw new InternalError('the engine cannot extract folders');
        await result.extractFolder(spec.path, async (relPath, file) => {
          const name = `${spec.name}/${relPath}`;
          if (RESERVED_NAMES.has(name)) {
            if ('stream' in file) discard(file.stream);
            log.error(`Artifact ${name}: the name is reserved for the task log; not uploaded`);
            outcome.ok = false;
            return;
          }
          if ('refused' in file) {
            jobs.push(errorArtifact(spec, name, 'invalid-resource-on-worker', file.refused));
            return;
          }
          await schedule(() => upload(spec, name, file, false));
        });
      }
    } catch (error) {
      if (!unusable(spec, error)) {
        if (RunGoneError.isRunGone(error)) runGone ??= error;
        else failures.push({ name: spec.name, error });
      }
    }
  }
  await Promise.all(jobs);

  if (runGone) throw runGone;
  if (problems.length > 0) throw new MalformedPayloadError(problems);
  if (failures.length > 0) {
    const names = failures.map((f) => f.name).join(', ');
    const first = failures[0]?.error;
    const message = `could not upload ${failures.length} artifact(s): ${names} (${(first as Error)?.message ?? String(first)})`;
    if (failures.every((f) => isOutage(f.error)))
      throw new ResourceUnavailableError(message, { cause: first });
    throw new InternalError(message, { cause: first });
  }
  return outcome;
}
