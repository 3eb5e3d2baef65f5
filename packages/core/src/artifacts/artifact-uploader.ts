import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync, statSync } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Logger } from '../logger.js';
import { silentLogger } from '../logger.js';
import type { ErrorArtifactReason, ObjectArtifactResponse, QueuePort } from '../queue/queue-port.js';
import type { Credentials } from '../task.js';
import type { Limiter } from '../util/limiter.js';
import { removeTree } from '../util/remove-tree.js';
import { backoff, sleep } from '../util/sleep.js';
import { contentTypeFor, isCompressible } from './content-type.js';

const DATA_INLINE_MAX = 8192;
const GZIP_MIN_SIZE = 512;
/** Read size of uploads and gzip preparation: large reads mean fewer chunks through hashing and the socket. */
const READ_CHUNK = 1024 * 1024;

export interface ArtifactUploaderOptions {
  queue: QueuePort;
  taskId: string;
  runId: number;
  /** The run's current credentials (they change at every reclaim). */
  credentials: () => Credentials;
  /** The task's expiry: the default and the ceiling of every artifact's `expires`. */
  taskExpires: string;
  /**
   * A folder in which the uploader makes its own `upload-XXXXXX` folder for gzip and spool files, when an upload
   * first needs one; `dispose()` removes that folder (and nothing else).
   */
  tempDir: string;
  /** Worker-wide limit on concurrent uploads. */
  limit?: Limiter;
  logger?: Logger;
  /** Attempts of the data PUT on 5xx and network errors, after the first (default 5). */
  putRetries?: number;
  /**
   * Called while uploads make progress (bytes read for gzip or sent, at most once a second; and when an upload
   * ends): the task runner resets the timeout of the hook that is uploading, so a long upload that moves is not
   * taken for a stuck hook.
   */
  onProgress?: () => void;
}

export interface ArtifactCommon {
  /** Artifact name, e.g. `public/build/target.tar.gz`. */
  name: string;
  /** Defaults to, and is capped by, the task's expiry. */
  expires?: string | Date;
  /** From the name's extension when absent. */
  contentType?: string;
  /** `auto` (default): gzip content-encoding for compressible types. */
  gzip?: boolean | 'auto';
}

export interface UploadedArtifact {
  name: string;
  storageType: 'object';
  contentType: string;
  contentEncoding: 'gzip' | 'identity';
  /** Bytes of the original content. */
  size: number;
  sha256: string;
  sha512: string;
}

interface Prepared {
  path: string;
  size: number;
  encoding: 'gzip' | 'identity';
  hashes?: { sha256: string; sha512: string };
  original: number;
  cleanup?: string;
}

class HashingTransform extends Transform {
  readonly sha256 = createHash('sha256');
  readonly sha512 = createHash('sha512');
  bytes = 0;
  constructor(private readonly onChunk: () => void = () => {}) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null, d?: Buffer) => void) {
    this.onChunk();
    this.sha256.update(chunk);
    this.sha512.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
  digests() {
    return { sha256: this.sha256.digest('hex'), sha512: this.sha512.digest('hex') };
  }
}

/** A data PUT the object store refused; `statusCode` lets callers tell an outage (5xx) from a refusal. */
class PutError extends Error {
  constructor(
    message: string,
    readonly retriable: boolean,
    readonly statusCode: number,
  ) {
    super(message);
  }
}

/**
 * The one artifact upload path of tcw, used by the artifacts plugin, the script engine's `./artifacts/` folder
 * and the task log. Object artifacts go through the object service: `createArtifact` → `createUpload` → the data
 * (inline when small, otherwise a streamed PUT with retries) → `finishUpload` (sha256 and sha512 of the original
 * bytes) → `finishArtifact`. Compressible content is PUT with `Content-Encoding: gzip` when the service lets the
 * uploader choose the encoding. Memory stays bounded whatever the size: data streams from disk.
 */
export class ArtifactUploader {
  readonly #o: ArtifactUploaderOptions;
  readonly #logger: Logger;
  #tempDir: string | undefined;

  #lastProgress = 0;

  /** Reports progress to `onProgress`, at most once a second unless `now` (an upload ended). */
  #progress(now = false): void {
    if (!this.#o.onProgress) return;
    const t = Date.now();
    if (!now && t - this.#lastProgress < 1000) return;
    this.#lastProgress = t;
    this.#o.onProgress();
  }

  constructor(options: ArtifactUploaderOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
  }

  /** The `expires` to use: the requested one capped by the task's expiry, or the task's expiry. */
  expiresFor(requested?: string | Date): string {
    const ceiling = new Date(this.#o.taskExpires);
    if (requested === undefined) return ceiling.toJSON();
    const wanted = new Date(requested);
    if (Number.isNaN(wanted.getTime())) return ceiling.toJSON();
    return (wanted < ceiling ? wanted : ceiling).toJSON();
  }

  #limit<T>(fn: () => Promise<T>): Promise<T> {
    return this.#o.limit ? this.#o.limit(fn) : fn();
  }

  async #temp(): Promise<string> {
    this.#tempDir ??= await mkdtemp(join(this.#o.tempDir, 'upload-'));
    return this.#tempDir;
  }

  /** Uploads a file from disk as an `object` artifact. */
  uploadFile(artifact: ArtifactCommon & { path: string }): Promise<UploadedArtifact> {
    return this.#limit(() => this.#upload(artifact, artifact.path));
  }

  /**
   * Uploads a stream (for engines that hand out files as streams): it is spooled to a temporary file first so
   * that its size is known and a retried PUT can start over.
   */
  uploadStream(artifact: ArtifactCommon & { stream: Readable }): Promise<UploadedArtifact> {
    return this.#limit(async () => {
      const dir = await this.#temp();
      const spool = join(dir, `spool-${Math.random().toString(36).slice(2)}`);
      try {
        await pipeline(artifact.stream, createWriteStream(spool, { mode: 0o600 }));
        return await this.#upload(artifact, spool);
      } finally {
        await rm(spool, { force: true });
      }
    });
  }

  async #prepare(path: string, size: number, gzip: boolean): Promise<Prepared> {
    if (!gzip) return { path, size, encoding: 'identity', original: size };
    let gzPath: string | undefined;
    const hasher = new HashingTransform(() => this.#progress());
    try {
      gzPath = join(await this.#temp(), `gz-${Math.random().toString(36).slice(2)}`);
      await pipeline(
        createReadStream(path, { highWaterMark: READ_CHUNK }),
        hasher,
        createGzip({ level: 6 }),
        createWriteStream(gzPath, { mode: 0o600 }),
      );
    } catch (error) {
      if (gzPath) await rm(gzPath, { force: true });
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOSPC' && code !== 'EDQUOT') throw error;
      // no room for the compressed copy (a full disk is also why a task log may be cut short): send it as it is
      this.#logger.warn(
        { path, err: (error as Error).message },
        'no room to gzip an upload; sending it uncompressed',
      );
      return { path, size, encoding: 'identity', original: size };
    }
    const gzSize = (await stat(gzPath)).size;
    return {
      path: gzPath,
      size: gzSize,
      encoding: 'gzip',
      hashes: hasher.digests(),
      original: hasher.bytes,
      cleanup: gzPath,
    };
  }

  async #upload(artifact: ArtifactCommon & { name: string }, path: string): Promise<UploadedArtifact> {
    const { queue, taskId, runId } = this.#o;
    const contentType = artifact.contentType ?? contentTypeFor(artifact.name);
    const expires = this.expiresFor(artifact.expires);
    // one metadata syscall: synchronous is far cheaper than a thread-pool round trip (see util/paths.ts)
    const size = statSync(path).size;
    const wantGzip =
      artifact.gzip === true ||
      ((artifact.gzip ?? 'auto') === 'auto' && isCompressible(contentType) && size >= GZIP_MIN_SIZE);

    const created = (await queue.createArtifact(
      taskId,
      runId,
      artifact.name,
      { storageType: 'object', expires, contentType },
      this.#o.credentials(),
    )) as ObjectArtifactResponse;
    const objectCreds = created.credentials;
    const upload = { projectId: created.projectId, uploadId: created.uploadId, expires: created.expires };

    // small content goes inline in createUpload (one call, no data PUT), as it is: gzip would not pay off
    const inline = size < DATA_INLINE_MAX;
    let prepared = await this.#prepare(path, size, wantGzip && !inline);
    try {
      let hashes: { sha256: string; sha512: string };
      if (inline) {
        // under 8 KiB: one blocking read costs less than the four dispatches of an asynchronous one
        const data = readFileSync(path);
        hashes = {
          sha256: createHash('sha256').update(data).digest('hex'),
          sha512: createHash('sha512').update(data).digest('hex'),
        };
        const res = await queue.createUpload(
          created.name,
          {
            ...upload,
            proposedUploadMethods: {
              dataInline: { contentType, objectData: data.toString('base64') },
              putUrl: { contentType, contentLength: data.length },
            },
          },
          objectCreds,
        );
        if (!res.uploadMethod.dataInline) {
          if (!res.uploadMethod.putUrl) throw new Error('the object service accepted no upload method');
          await this.#put(res.uploadMethod.putUrl, prepared, contentType);
        }
      } else {
        let res = await queue.createUpload(
          created.name,
          { ...upload, proposedUploadMethods: { putUrl: { contentType, contentLength: prepared.size } } },
          objectCreds,
        );
        const pinned =
          res.uploadMethod.putUrl && headerValue(res.uploadMethod.putUrl.headers, 'content-encoding');
        if (prepared.encoding === 'gzip' && pinned && pinned.toLowerCase() !== 'gzip') {
          // The service fixes the encoding (a real S3 backend says identity): send the bytes as they are.
          await this.#cleanup(prepared);
          prepared = await this.#prepare(path, size, false);
          res = await queue.createUpload(
            created.name,
            { ...upload, proposedUploadMethods: { putUrl: { contentType, contentLength: prepared.size } } },
            objectCreds,
          );
        }
        if (!res.uploadMethod.putUrl) throw new Error('the object service did not offer putUrl');
        const measured = await this.#put(res.uploadMethod.putUrl, prepared, contentType);
        hashes = prepared.hashes ?? measured;
      }
      await queue.finishUpload(created.name, { ...upload, hashes }, objectCreds);
      await queue.finishArtifact(taskId, runId, artifact.name, created.uploadId, this.#o.credentials());
      this.#progress(true);
      return {
        name: artifact.name,
        storageType: 'object',
        contentType,
        contentEncoding: prepared.encoding,
        size: prepared.original,
        ...hashes,
      };
    } finally {
      await this.#cleanup(prepared);
    }
  }

  async #cleanup(prepared: Prepared): Promise<void> {
    if (prepared.cleanup) await rm(prepared.cleanup, { force: true });
  }

  /** PUTs the prepared file, retrying 5xx and network errors. Returns the hashes of the bytes sent. */
  async #put(
    target: { url: string; headers: Record<string, string> },
    prepared: Prepared,
    contentType: string,
  ): Promise<{ sha256: string; sha512: string }> {
    const retries = this.#o.putRetries ?? 5;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#putOnce(target, prepared, contentType);
      } catch (error) {
        const retriable = !(error instanceof PutError) || error.retriable;
        if (!retriable || attempt >= retries) throw error;
        const delay = backoff(attempt, 200, 10_000);
        this.#logger.warn(
          { url: target.url, attempt, err: (error as Error).message },
          'artifact PUT failed, retrying',
        );
        await sleep(delay);
      }
    }
  }

  async #putOnce(
    target: { url: string; headers: Record<string, string> },
    prepared: Prepared,
    contentType: string,
  ): Promise<{ sha256: string; sha512: string }> {
    const url = new URL(target.url);
    const headers: Record<string, string | number> = { ...target.headers };
    if (!headerValue(target.headers, 'content-type')) headers['Content-Type'] = contentType;
    if (!headerValue(target.headers, 'content-length')) headers['Content-Length'] = prepared.size;
    if (prepared.encoding === 'gzip' && !headerValue(target.headers, 'content-encoding')) {
      headers['Content-Encoding'] = 'gzip';
    }
    const sha256 = createHash('sha256');
    const sha512 = createHash('sha512');
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const handle = await open(prepared.path, 'r');
    try {
      await new Promise<void>((resolve, reject) => {
        const req = send(url, { method: 'PUT', headers }, (res) => {
          res.resume();
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve();
            else
              reject(
                new PutError(`PUT ${url.origin}${url.pathname} answered ${status}`, status >= 500, status),
              );
          });
          res.on('error', reject);
        });
        req.setTimeout(5 * 60_000, () => req.destroy(new Error('PUT timed out')));
        req.on('error', reject);
        // 1 MiB reads and hashing in a 'data' listener (no Transform in between): fewer, larger writes
        const body = handle.createReadStream({ autoClose: false, start: 0, highWaterMark: READ_CHUNK });
        body.on('error', (e) => req.destroy(e));
        body.on('data', (chunk) => {
          sha256.update(chunk);
          sha512.update(chunk);
          this.#progress();
        });
        body.pipe(req);
      });
    } finally {
      await handle.close();
    }
    return { sha256: sha256.digest('hex'), sha512: sha512.digest('hex') };
  }

  /** An `error` artifact: a file the task promised is missing, unreadable, or refused. */
  async createError(name: string, reason: ErrorArtifactReason, message: string, expires?: string | Date) {
    await this.#o.queue.createArtifact(
      this.#o.taskId,
      this.#o.runId,
      name,
      { storageType: 'error', expires: this.expiresFor(expires), reason, message: message.slice(0, 4096) },
      this.#o.credentials(),
    );
  }

  /** A `reference` artifact: the queue redirects readers to `url`. */
  async createReference(name: string, url: string, contentType: string, expires?: string | Date) {
    await this.#o.queue.createArtifact(
      this.#o.taskId,
      this.#o.runId,
      name,
      { storageType: 'reference', expires: this.expiresFor(expires), url, contentType },
      this.#o.credentials(),
    );
  }

  /** A `link` artifact: another name for an artifact of the same run. */
  async createLink(name: string, target: string, contentType?: string, expires?: string | Date) {
    await this.#o.queue.createArtifact(
      this.#o.taskId,
      this.#o.runId,
      name,
      {
        storageType: 'link',
        expires: this.expiresFor(expires),
        artifact: target,
        ...(contentType ? { contentType } : {}),
      },
      this.#o.credentials(),
    );
  }

  /** Removes its temporary folder, if it made one. */
  async dispose(): Promise<void> {
    const dir = this.#tempDir;
    this.#tempDir = undefined;
    if (dir) await removeTree(dir);
  }
}

function headerValue(headers: Record<string, string>, name: string): string | undefined {
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === name) return v;
  return undefined;
}
