import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline, Readable } from 'node:stream';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import {
  type Credentials,
  type Logger,
  MalformedPayloadError,
  ResourceUnavailableError,
  type TaskLogWriter,
} from '@tcw/core';
import type Docker from 'dockerode';
import taskcluster from 'taskcluster-client';

/** Credentials for one registry (the key of `registries` in the config is the registry host, e.g. `ghcr.io`). */
export interface RegistryAuth {
  username: string;
  password: string;
}

/** `image` of the payload: a name, or a `docker save` tarball that another task uploaded as an artifact. */
export type ImageSpec = string | { type: 'task-image'; taskId: string; path: string };

export interface ImageRequest {
  image: ImageSpec;
  log: TaskLogWriter;
  signal: AbortSignal;
  rootUrl: string;
  credentials?: () => Credentials;
}

interface CacheEntry {
  /** The image ID (sha256:…). */
  id: string;
  /** What the task asked for: a name, or `task-image:<taskId>/<path>`. */
  key: string;
  size: number;
  lastUsed: number;
}

// The reference grammar of distribution/reference, simplified: [host[:port]/]path[:tag][@digest].
const NAME_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN =
  '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?';
const DOMAIN_RE = new RegExp(`^${DOMAIN}$`);
const PATH_RE = new RegExp(
  `^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*(?::[\\w][\\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`,
);

/** Is `name` a syntactically valid image reference? */
export function isValidImageName(name: string): boolean {
  if (name.length > 255) return false;
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  if (first && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    return DOMAIN_RE.test(first) && PATH_RE.test(name.slice(slash + 1));
  }
  return PATH_RE.test(name);
}

/** The registry host of an image name (`docker.io` when there is none). */
export function registryOf(name: string): string {
  const slash = name.indexOf('/');
  if (slash < 0) return 'docker.io';
  const first = name.slice(0, slash);
  return first.includes('.') || first.includes(':') || first === 'localhost' ? first : 'docker.io';
}

/** Errors a registry returns for a name that does not exist (or that we may not see): the task's mistake. */
const NOT_FOUND =
  /not found|manifest unknown|name unknown|does not exist|pull access denied|unauthorized|denied|no basic auth credentials|authentication required|invalid reference|repository name must/i;

/**
 * Finds, pulls and loads images for tasks; remembers (in `<workDir>/docker-images.json`) which images it brought
 * in and when each was last used, and removes the least recently used ones when their total exceeds the limit.
 * Concurrent requests for the same image share one pull or load.
 */
export class ImageManager {
  readonly #docker: Docker;
  readonly #registries: Record<string, RegistryAuth>;
  readonly #maxBytes: number | undefined;
  #logger: Logger;
  #stateFile: string | undefined;
  #entries = new Map<string, CacheEntry>();
  readonly #inflight = new Map<string, Promise<CacheEntry>>();
  /** Image IDs of running tasks: never removed by the LRU. */
  readonly #inUse = new Map<string, number>();

  constructor(
    docker: Docker,
    options: { registries?: Record<string, RegistryAuth>; maxBytes?: number; logger: Logger },
  ) {
    this.#docker = docker;
    this.#registries = options.registries ?? {};
    this.#maxBytes = options.maxBytes;
    this.#logger = options.logger;
  }

  async init(workDir: string, logger: Logger): Promise<void> {
    this.#logger = logger;
    await mkdir(workDir, { recursive: true });
    this.#stateFile = join(workDir, 'docker-images.json');
    try {
      const saved = JSON.parse(await readFile(this.#stateFile, 'utf8')) as CacheEntry[];
      for (const e of saved) this.#entries.set(e.key, e);
    } catch {
      // first start, or an unreadable file: start afresh
    }
  }

  /** Whether the configured credentials exist for the registry of `name`. */
  hasCredentialsFor(name: string): boolean {
    return registryOf(name) in this.#registries;
  }

  /** Resolves the payload's `image` to a local image ID, pulling or loading it when needed. */
  async resolve(request: ImageRequest): Promise<string> {
    const key =
      typeof request.image === 'string'
        ? request.image
        : `task-image:${request.image.taskId}/${request.image.path}`;
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#resolve(key, request).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    const entry = await pending;
    entry.lastUsed = Date.now();
    // only images we brought in are tracked (and may be removed by the LRU)
    if (this.#entries.get(key) === entry) await this.#save();
    return entry.id;
  }

  /** Marks an image as used by a running container (protects it from the LRU) until `release`. */
  acquire(id: string): void {
    this.#inUse.set(id, (this.#inUse.get(id) ?? 0) + 1);
  }

  release(id: string): void {
    const n = (this.#inUse.get(id) ?? 1) - 1;
    if (n <= 0) this.#inUse.delete(id);
    else this.#inUse.set(id, n);
  }

  async #resolve(key: string, request: ImageRequest): Promise<CacheEntry> {
    const known = this.#entries.get(key);
    if (known && (await this.#exists(known.id))) return known;
    const { image } = request;
    let id: string;
    if (typeof image === 'string') {
      if (!isValidImageName(image)) {
        throw new MalformedPayloadError([
          { pointer: '/image', message: `"${image}" is not a valid image name` },
        ]);
      }
      const local = await this.#inspect(image);
      if (local) {
        // present before us (built or pulled by the operator): used as is, never removed by the LRU
        return { id: local.Id, key, size: local.Size, lastUsed: Date.now() };
      }
      id = await this.#pull(image, request);
    } else {
      id = await this.#load(image, request);
    }
    const info = await this.#inspect(id);
    const entry: CacheEntry = { id, key, size: info?.Size ?? 0, lastUsed: Date.now() };
    this.#entries.set(key, entry);
    await this.#enforceLimit(id);
    return entry;
  }

  async #inspect(name: string): Promise<Docker.ImageInspectInfo | undefined> {
    try {
      return await this.#docker.getImage(name).inspect();
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return undefined;
      throw new ResourceUnavailableError(
        `dockerd failed to inspect image ${name}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
  }

  async #exists(id: string): Promise<boolean> {
    return (await this.#inspect(id)) !== undefined;
  }

  async #pull(name: string, request: ImageRequest): Promise<string> {
    const registry = registryOf(name);
    const auth = this.#registries[registry];
    if (auth) request.log.addSecret(auth.password);
    request.log.info(`pulling image ${name}${auth ? ` (with the credentials for ${registry})` : ''}`);
    const ref =
      name.includes('@') || /:[\w][\w.-]*$/.test(name.slice(name.lastIndexOf('/') + 1))
        ? name
        : `${name}:latest`;
    try {
      const stream = (await this.#docker.pull(ref, {
        abortSignal: request.signal,
        ...(auth
          ? { authconfig: { username: auth.username, password: auth.password, serveraddress: registry } }
          : {}),
      })) as Readable;
      await new Promise<void>((resolve, reject) => {
        this.#docker.modem.followProgress(
          stream,
          (error: Error | null) => (error ? reject(error) : resolve()),
          (event: { error?: string; errorDetail?: { message?: string } }) => {
            if (event.error) reject(new Error(event.errorDetail?.message ?? event.error));
          },
        );
      });
    } catch (error) {
      const message = dockerMessage(error);
      request.log.error(`pulling ${name} failed: ${message}`);
      if (request.signal.aborted)
        throw new ResourceUnavailableError(`pull of ${name} aborted`, { cause: error });
      if (NOT_FOUND.test(message)) {
        throw new MalformedPayloadError([{ pointer: '/image', message: `cannot pull ${name}: ${message}` }], {
          cause: error,
        });
      }
      throw new ResourceUnavailableError(`cannot pull ${name} from ${registry}: ${message}`, {
        cause: error,
      });
    }
    const info = await this.#inspect(ref);
    if (!info) throw new ResourceUnavailableError(`dockerd pulled ${ref} but does not show it`);
    request.log.info(`pulled ${name} (${info.Id})`);
    return info.Id;
  }

  async #load(image: { taskId: string; path: string }, request: ImageRequest): Promise<string> {
    const credentials = request.credentials?.();
    const queue = new taskcluster.Queue({
      rootUrl: request.rootUrl,
      ...(credentials ? { credentials } : {}),
    });
    const url: string =
      image.path.startsWith('public/') || !credentials
        ? queue.buildUrl(queue.getLatestArtifact, image.taskId, image.path)
        : await queue.buildSignedUrl(queue.getLatestArtifact, image.taskId, image.path, {
            expiration: 30 * 60,
          });
    request.log.info(`loading image from artifact ${image.path} of task ${image.taskId}`);
    let response: Response;
    try {
      response = await fetch(url, { redirect: 'follow', signal: request.signal });
    } catch (error) {
      request.log.error(`fetching the image artifact failed: ${(error as Error).message}`);
      throw new ResourceUnavailableError(
        `cannot fetch artifact ${image.path} of task ${image.taskId}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    if (!response.ok || !response.body) {
      const text = (await response.text().catch(() => '')).slice(0, 500);
      request.log.error(`fetching the image artifact failed: HTTP ${response.status} ${text}`);
      if (response.status >= 400 && response.status < 500) {
        throw new MalformedPayloadError([
          {
            pointer: '/image',
            message: `artifact ${image.path} of task ${image.taskId} cannot be fetched: HTTP ${response.status}`,
          },
        ]);
      }
      throw new ResourceUnavailableError(
        `artifact ${image.path} of task ${image.taskId}: HTTP ${response.status}`,
      );
    }
    const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
    let loaded: string | undefined;
    try {
      const tar = await decompressAuto(body);
      const out = (await this.#docker.loadImage(tar, {
        quiet: true,
        abortSignal: request.signal,
      })) as Readable;
      const events: Array<{ stream?: string; error?: string; errorDetail?: { message?: string } }> = [];
      await new Promise<void>((resolve, reject) => {
        this.#docker.modem.followProgress(
          out,
          (error: Error | null) => (error ? reject(error) : resolve()),
          (event: (typeof events)[number]) => events.push(event),
        );
      });
      const failure = events.find((e) => e.error);
      if (failure) throw new Error(failure.errorDetail?.message ?? failure.error);
      for (const e of events) {
        const m = /Loaded image(?: ID)?: (\S+)/.exec(e.stream ?? '');
        if (m) {
          loaded = m[1];
          break;
        }
      }
      if (!loaded) throw new Error('the tarball holds no image');
    } catch (error) {
      const message = dockerMessage(error);
      request.log.error(`loading the image failed: ${message}`);
      if (request.signal.aborted) throw new ResourceUnavailableError('image load aborted', { cause: error });
      throw new MalformedPayloadError(
        [
          {
            pointer: '/image',
            message: `artifact ${image.path} of task ${image.taskId} is not a docker image tarball: ${message}`,
          },
        ],
        { cause: error },
      );
    }
    const info = await this.#inspect(loaded);
    if (!info) throw new ResourceUnavailableError(`dockerd loaded ${loaded} but does not show it`);
    request.log.info(`loaded image ${loaded} (${info.Id})`);
    return info.Id;
  }

  /** Removes least recently used images of ours (never `keep`, never one in use) while over the byte limit. */
  async #enforceLimit(keep: string): Promise<void> {
    if (this.#maxBytes === undefined) return;
    const byId = new Map<string, CacheEntry>();
    for (const e of this.#entries.values()) {
      const prev = byId.get(e.id);
      if (!prev || prev.lastUsed < e.lastUsed) byId.set(e.id, e);
    }
    let total = [...byId.values()].reduce((sum, e) => sum + e.size, 0);
    const candidates = [...byId.values()]
      .filter((e) => e.id !== keep)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const victim of candidates) {
      if (total <= this.#maxBytes) break;
      if (this.#inUse.has(victim.id)) continue;
      try {
        await this.#docker.getImage(victim.id).remove({ force: true });
        this.#logger.info({ image: victim.key, id: victim.id }, 'removed a least recently used image');
      } catch (error) {
        if ((error as { statusCode?: number }).statusCode !== 404) {
          this.#logger.warn({ image: victim.key, error: (error as Error).message }, 'could not remove image');
          continue;
        }
      }
      total -= victim.size;
      for (const [k, e] of this.#entries) if (e.id === victim.id) this.#entries.delete(k);
    }
  }

  async #save(): Promise<void> {
    if (!this.#stateFile) return;
    const tmp = `${this.#stateFile}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      await writeFile(tmp, JSON.stringify([...this.#entries.values()]));
      await rename(tmp, this.#stateFile);
    } catch (error) {
      // the cache still works in memory; after a restart, images are looked up again
      this.#logger.warn(
        { file: this.#stateFile, error: (error as Error).message },
        'cannot save the image cache state',
      );
    }
  }
}

/** The message dockerd (or the registry behind it) gave, without dockerode's "(HTTP code …) …" wrapping. */
export function dockerMessage(error: unknown): string {
  const e = error as { json?: { message?: string }; reason?: string; message?: string };
  const message = e.json?.message ?? e.message ?? String(error);
  return message.replace(/^\(HTTP code \d+\) [^-]*- /, '').trim();
}

/** A `docker save` tarball, plain, gzip or zstd compressed (told apart by their magic bytes), as a tar stream. */
export async function decompressAuto(source: Readable): Promise<Readable> {
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let head = Buffer.alloc(0);
  while (head.length < 4) {
    const next = await iterator.next();
    if (next.done) break;
    head = Buffer.concat([head, Buffer.from(next.value)]);
  }
  const rest = Readable.from(
    (async function* () {
      if (head.length) yield head;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield Buffer.from(next.value);
      }
    })(),
  );
  let decompressor: NodeJS.ReadWriteStream | undefined;
  if (head[0] === 0x1f && head[1] === 0x8b) decompressor = createGunzip();
  else if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd)
    decompressor = createZstdDecompress();
  if (!decompressor) return rest;
  pipeline(rest, decompressor, () => {
    // errors reach the consumer through the destroyed decompressor
  });
  return decompressor as unknown as Readable;
}
