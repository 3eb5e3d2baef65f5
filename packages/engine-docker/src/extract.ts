import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { type ExtractedFile, MalformedPayloadError } from '@tcw/core';
import type Docker from 'dockerode';
import tar from 'tar-stream';

/** A container path as extraction takes it: absolute, normalised, no `..` segments. */
export function containerPath(path: string): string {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new MalformedPayloadError(`${path}: a container path must be absolute`);
  }
  if (path.split('/').includes('..')) {
    throw new MalformedPayloadError(`${path}: a path with ".." segments is refused`);
  }
  const normalized = posix.normalize(path);
  return normalized.length > 1 && normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
}

function enoent(path: string): Error {
  return Object.assign(new Error(`ENOENT: ${path} does not exist in the container`), { code: 'ENOENT' });
}

async function archive(container: Docker.Container, path: string): Promise<Readable> {
  try {
    return (await container.getArchive({ path })) as Readable;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) throw enoent(path);
    throw error;
  }
}

/**
 * One file of a (stopped) container, streamed from dockerd's archive endpoint: the tar stream is read entry by entry
 * and the file's bytes go straight to the consumer. Symlinks are followed inside the container (10 hops at most).
 */
export async function extractFile(
  container: Docker.Container,
  path: string,
  hops = 0,
): Promise<ExtractedFile> {
  const target = containerPath(path);
  const source = await archive(container, target);
  const extract = tar.extract();
  return new Promise<ExtractedFile>((resolve, reject) => {
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      source.destroy();
      reject(error);
    };
    extract.once('entry', (header, stream, next) => {
      settled = true;
      if (header.type === 'file' || header.type === 'contiguous-file') {
        stream.once('end', () => next());
        resolve({ stream, ...(header.size !== undefined ? { size: header.size } : {}) });
        return;
      }
      source.destroy();
      if (header.type === 'symlink' && header.linkname) {
        if (hops >= 10) {
          reject(new MalformedPayloadError(`${target}: too many levels of symbolic links`));
          return;
        }
        const linked = posix.resolve(posix.dirname(target), header.linkname);
        extractFile(container, linked, hops + 1).then(resolve, reject);
        return;
      }
      reject(new MalformedPayloadError(`${target} is not a regular file (${header.type})`));
    });
    extract.once('finish', () => fail(enoent(target)));
    extract.once('error', fail);
    source.once('error', fail);
    source.pipe(extract);
  });
}

/**
 * Every regular file under a folder of a (stopped) container, one at a time in archive order; `handler` gets the
 * `/`-separated path relative to the folder. Symlinks are not followed: they are passed as refused.
 */
export async function extractFolder(
  container: Docker.Container,
  path: string,
  handler: (relPath: string, file: ExtractedFile | { refused: string }) => Promise<void>,
): Promise<void> {
  const target = containerPath(path);
  const source = await archive(container, target);
  const extract = tar.extract();
  source.once('error', (error) => extract.destroy(error));
  source.pipe(extract);
  let first = true;
  try {
    for await (const entry of extract) {
      const { header } = entry;
      const slash = header.name.indexOf('/');
      const rel = slash < 0 ? '' : header.name.slice(slash + 1).replace(/\/+$/, '');
      if (first) {
        first = false;
        if (header.type !== 'directory') {
          entry.resume();
          source.destroy();
          throw new MalformedPayloadError(`${target} is not a directory`);
        }
      }
      if (rel && (header.type === 'file' || header.type === 'contiguous-file')) {
        await handler(rel, { stream: entry, ...(header.size !== undefined ? { size: header.size } : {}) });
      } else if (rel && header.type === 'symlink') {
        await handler(rel, { refused: `a symbolic link (to ${header.linkname}) is not followed` });
      }
      entry.resume();
    }
  } finally {
    source.destroy();
  }
}
