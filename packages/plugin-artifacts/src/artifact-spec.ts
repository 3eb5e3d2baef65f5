import { posix } from 'node:path';
import {
  BACKING_LOG_NAME,
  MalformedPayloadError,
  type PayloadProblem,
  type PayloadSchemaPart,
} from '@tcw/core';

/** Names the worker itself uses for the task log: a task's artifact may not take them. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([BACKING_LOG_NAME, 'public/logs/live.log']);

/** One entry of the payload's `artifacts` list (generic-worker's shape). */
export interface ArtifactSpec {
  type: 'file' | 'directory';
  /** In the engine's own terms: relative to the task directory (native, mock) or absolute (a container). */
  path: string;
  /** The artifact's name (a directory's files get `<name>/<relative path>`); default: the path. */
  name?: string;
  /** Defaults to, and is capped by, the task's expiry. */
  expires?: string;
  /** From the file's extension when absent. */
  contentType?: string;
  /** `gzip` or `identity`; by default gzip for compressible types. */
  contentEncoding?: 'gzip' | 'identity';
  /** A missing file does not fail the task (the `error` artifact is still created). */
  optional?: boolean;
}

/** An artifact spec after the payload checks: its index, and a name that is always set. */
export interface CheckedSpec extends ArtifactSpec {
  index: number;
  name: string;
}

export const artifactsPayloadSchema: PayloadSchemaPart = {
  properties: {
    artifacts: {
      type: 'array',
      description: 'Files and folders of the task to upload as artifacts once it has run',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['type', 'path'],
        properties: {
          type: {
            enum: ['file', 'directory'],
            description:
              '`file`: one file; `directory`: every file under a folder, named `<name>/<relative path>`',
          },
          path: {
            type: 'string',
            minLength: 1,
            description: 'Where the file is, relative to the task directory (or absolute in a container)',
          },
          name: {
            type: 'string',
            minLength: 1,
            maxLength: 1024,
            pattern: '^(?!/)(?!.*/$)[\\x20-\\x7e]+$',
            description: 'Artifact name, e.g. `public/build/app.tar.gz` (default: the path)',
          },
          expires: {
            type: 'string',
            format: 'date-time',
            description: "When the artifact expires (default and ceiling: the task's expiry)",
          },
          contentType: {
            type: 'string',
            minLength: 1,
            description: "MIME type (default: from the file's extension)",
          },
          contentEncoding: {
            enum: ['identity', 'gzip'],
            description: 'Content encoding of the upload (default: gzip for compressible types)',
          },
          optional: {
            type: 'boolean',
            description: 'When true, a missing file does not fail the task',
          },
        },
      },
    },
  },
};

/**
 * Checks what the schema cannot: a path that climbs out through `..`, an `expires` that is not a date or comes
 * before the task's deadline, two entries with the same name, and names reserved for the task log. Throws one `MalformedPayloadError` naming every JSON pointer.
 */
export function checkSpecs(
  specs: readonly ArtifactSpec[],
  options: { deadline?: string } = {},
): CheckedSpec[] {
  const deadline = options.deadline === undefined ? Number.NaN : Date.parse(options.deadline);
  const problems: PayloadProblem[] = [];
  const names = new Map<string, number>();
  const checked = specs.map((spec, index) => {
    const normal = posix.normalize(spec.path.replaceAll('\\', '/'));
    if (normal === '..' || normal.startsWith('../')) {
      problems.push({
        pointer: `/artifacts/${index}/path`,
        message: `path ${JSON.stringify(spec.path)} leaves the task directory`,
      });
    }
    if (spec.expires !== undefined) {
      const expires = Date.parse(spec.expires);
      if (Number.isNaN(expires)) {
        problems.push({ pointer: `/artifacts/${index}/expires`, message: 'is not a date' });
      } else if (expires < deadline) {
        // generic-worker's rule: an artifact must outlive the task's deadline
        problems.push({
          pointer: `/artifacts/${index}/expires`,
          message: `${spec.expires} is before the task's deadline (${options.deadline})`,
        });
      }
    }
    if (spec.name === undefined && (normal === '.' || normal === '/')) {
      problems.push({
        pointer: `/artifacts/${index}/name`,
        message: 'is required when the path is the task directory itself',
      });
    }
    const name = spec.name ?? defaultName(normal);
    const previous = names.get(name);
    if (RESERVED_NAMES.has(name)) {
      problems.push({
        pointer: `/artifacts/${index}/name`,
        message: `artifact name ${JSON.stringify(name)} is reserved for the task log`,
      });
    } else if (previous !== undefined) {
      problems.push({
        pointer: `/artifacts/${index}/name`,
        message: `artifact name ${JSON.stringify(name)} is already used by /artifacts/${previous}`,
      });
    } else names.set(name, index);
    return { ...spec, index, name };
  });
  if (problems.length > 0) throw new MalformedPayloadError(problems);
  return checked;
}

function defaultName(normalPath: string): string {
  return (
    normalPath
      .replace(/^(\.\/)+/, '')
      .replace(/^\/+/, '')
      .replace(/\/+$/, '') || 'artifact'
  );
}
