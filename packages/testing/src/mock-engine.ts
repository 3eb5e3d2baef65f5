import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type AbortOptions,
  type EngineCapabilities,
  type EngineV1,
  type ExtractedFile,
  FatalError,
  FeatureNotSupportedError,
  InternalError,
  MalformedPayloadError,
  type PayloadSchemaPart,
  type ProxySpec,
  ResourceUnavailableError,
  type ResultSetV1,
  resolveInside,
  type SandboxBuilderV1,
  type SandboxOptions,
  type SandboxV1,
  type VolumeSpec,
  walkFiles,
} from '@tcw/core';

/** The mock engine's payload: a declarative script run in-process, no real process. */
export interface MockPayload {
  /** Lines written to the task log, in order. */
  log?: string | string[];
  /** Exit code (default 0). */
  exitCode?: number;
  /** Run this long before exiting (an abort cuts it short). */
  delayMs?: number;
  /** The result set's cleanup (`dispose`) takes this long. */
  disposeDelayMs?: number;
  /** Print `NAME=value` for each of these env vars. */
  env?: string[];
  /** Files created in the sandbox's directory (relative path → content). */
  files?: Record<string, string>;
  /** An outcome that is not an exit code. */
  error?: 'malformed-payload' | 'internal-error' | 'fatal' | 'resource-unavailable';
  /** Ignore the polite signal: only the kill after the grace period ends the task. */
  ignoreTerm?: boolean;
  /** Print the content of a file of a mounted volume. */
  readVolume?: { mountPoint: string; file: string };
  /** Write a file into a mounted volume. */
  writeVolume?: { mountPoint: string; file: string; content: string };
  /** GET `<proxy>/<path>` and print the body. */
  fetchProxy?: { name: string; path: string };
}

const payloadSchema: PayloadSchemaPart = {
  properties: {
    mock: {
      type: 'object',
      additionalProperties: false,
      properties: {
        log: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
        exitCode: { type: 'integer', minimum: 0, maximum: 255 },
        delayMs: { type: 'integer', minimum: 0, maximum: 300_000 },
        disposeDelayMs: { type: 'integer', minimum: 0, maximum: 300_000 },
        env: { type: 'array', items: { type: 'string' } },
        files: { type: 'object', additionalProperties: { type: 'string' } },
        error: { enum: ['malformed-payload', 'internal-error', 'fatal', 'resource-unavailable'] },
        ignoreTerm: { type: 'boolean' },
        readVolume: {
          type: 'object',
          required: ['mountPoint', 'file'],
          properties: { mountPoint: { type: 'string' }, file: { type: 'string' } },
        },
        writeVolume: {
          type: 'object',
          required: ['mountPoint', 'file', 'content'],
          properties: {
            mountPoint: { type: 'string' },
            file: { type: 'string' },
            content: { type: 'string' },
          },
        },
        fetchProxy: {
          type: 'object',
          required: ['name', 'path'],
          properties: { name: { type: 'string' }, path: { type: 'string' } },
        },
      },
    },
  },
};

/** What a test can inspect about one sandbox the mock engine made. */
export interface MockSandboxRecord {
  taskId: string;
  payload: MockPayload;
  env: Record<string, string>;
  volumes: Record<string, VolumeSpec>;
  proxies: Record<string, ProxySpec>;
  files: Record<string, string>;
  started: boolean;
  discarded: boolean;
  aborts: AbortOptions[];
  disposed: boolean;
  dir: string;
}

export interface MockEngineOptions {
  /** Override capabilities (all true by default) to test plugins against a poorer engine. */
  capabilities?: Partial<EngineCapabilities>;
  name?: string;
}

export interface MockEngine extends EngineV1 {
  /** Every sandbox made, in order. */
  readonly sandboxes: MockSandboxRecord[];
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function need(capabilities: EngineCapabilities, capability: keyof EngineCapabilities): void {
  if (!capabilities[capability]) throw new FeatureNotSupportedError(String(capability));
}

/**
 * An engine that runs the `mock` payload in-process: it writes log lines, creates files, prints env vars, waits,
 * and exits with a chosen code. Every capability can be switched off. For plugin tests and the worker's own tests.
 */
export function createMockEngine(options: MockEngineOptions = {}): MockEngine {
  const capabilities: EngineCapabilities = {
    env: true,
    volumes: true,
    proxies: true,
    files: true,
    extract: true,
    gracefulAbort: true,
    ...options.capabilities,
  };
  const sandboxes: MockSandboxRecord[] = [];

  return {
    specificationVersion: 'v1',
    name: options.name ?? 'mock',
    capabilities,
    sandboxes,
    payloadSchema: () => payloadSchema,
    async newSandboxBuilder(opts: SandboxOptions): Promise<SandboxBuilderV1> {
      const payload = (opts.payload.mock ?? {}) as MockPayload;
      const dir = await mkdtemp(join(tmpdir(), 'tcw-mock-'));
      const record: MockSandboxRecord = {
        taskId: opts.task.taskId,
        payload,
        env: {},
        volumes: {},
        proxies: {},
        files: {},
        started: false,
        discarded: false,
        aborts: [],
        disposed: false,
        dir,
      };
      sandboxes.push(record);
      let used = false;
      const builder: SandboxBuilderV1 = {
        specificationVersion: 'v1',
        setEnv(name, value) {
          need(capabilities, 'env');
          if (!ENV_NAME.test(name))
            throw new MalformedPayloadError(`invalid environment variable name: ${name}`);
          if (name in record.env)
            throw new MalformedPayloadError(`environment variable ${name} is set twice`);
          record.env[name] = value;
        },
        attachVolume(mountPoint, volume) {
          need(capabilities, 'volumes');
          if (mountPoint in record.volumes) throw new MalformedPayloadError(`two volumes at ${mountPoint}`);
          record.volumes[mountPoint] = volume;
        },
        attachProxy(name, proxy) {
          need(capabilities, 'proxies');
          if (name in record.proxies) throw new MalformedPayloadError(`proxy ${name} attached twice`);
          record.proxies[name] = proxy;
          return proxy.target;
        },
        async writeFile(path, data) {
          need(capabilities, 'files');
          record.files[path] = typeof data === 'string' ? data : Buffer.from(data).toString('utf8');
          const inside = join(dir, path);
          await mkdir(dirname(inside), { recursive: true });
          await writeFile(inside, data);
        },
        async start() {
          if (used) throw new Error('sandbox builder already used');
          used = true;
          record.started = true;
          return startMockSandbox(record, opts, capabilities);
        },
        async discard() {
          if (record.discarded) return;
          record.discarded = true;
          used = true;
          await rm(dir, { recursive: true, force: true });
        },
      };
      return builder;
    },
  };
}

function startMockSandbox(
  record: MockSandboxRecord,
  opts: SandboxOptions,
  capabilities: EngineCapabilities,
): SandboxV1 {
  const p = record.payload;
  let abortRequested: ((graceMs: number) => void) | undefined;
  let aborted = false;
  const abortSignal = new Promise<number>((resolve) => {
    abortRequested = resolve;
  });

  const execute = async (): Promise<{ exitCode: number | null; error?: Error }> => {
    for (const line of typeof p.log === 'string' ? [p.log] : (p.log ?? [])) opts.log.write(`${line}\n`);
    for (const name of p.env ?? []) opts.log.write(`${name}=${record.env[name] ?? ''}\n`);
    for (const [path, content] of Object.entries(p.files ?? {})) {
      const target = join(record.dir, path);
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, content);
    }
    if (p.writeVolume) {
      const volume = record.volumes[p.writeVolume.mountPoint];
      if (!volume) return { exitCode: 1 };
      await writeFile(join(volume.hostPath, p.writeVolume.file), p.writeVolume.content);
    }
    if (p.readVolume) {
      const volume = record.volumes[p.readVolume.mountPoint];
      if (!volume) return { exitCode: 1 };
      opts.log.write(`${await readFile(join(volume.hostPath, p.readVolume.file), 'utf8')}\n`);
    }
    if (p.fetchProxy) {
      const proxy = record.proxies[p.fetchProxy.name];
      if (!proxy) return { exitCode: 1 };
      const res = await fetch(`${proxy.target.replace(/\/$/, '')}/${p.fetchProxy.path.replace(/^\//, '')}`);
      opts.log.write(`${await res.text()}\n`);
      if (!res.ok) return { exitCode: 1 };
    }
    if (p.delayMs) {
      const outcome = await Promise.race([
        new Promise<'done'>((r) => setTimeout(() => r('done'), p.delayMs).unref()),
        abortSignal,
      ]);
      if (outcome !== 'done') {
        const grace = outcome;
        if (p.ignoreTerm && grace > 0) await new Promise((r) => setTimeout(r, grace));
        return { exitCode: null };
      }
    }
    const errors = {
      'malformed-payload': () => new MalformedPayloadError('the mock task says its payload is malformed'),
      'internal-error': () => new InternalError('the mock task reports an internal error'),
      fatal: () => new FatalError('the mock task reports a fatal error'),
      'resource-unavailable': () => new ResourceUnavailableError('the mock task could not reach a resource'),
    };
    return p.error ? { exitCode: 3, error: errors[p.error]() } : { exitCode: p.exitCode ?? 0 };
  };

  const running = execute();
  let result: Promise<ResultSetV1> | undefined;
  const wait = () => {
    result ??= running.then(({ exitCode, error }) =>
      makeResultSet(record, exitCode, aborted, capabilities, error),
    );
    return result;
  };
  return {
    specificationVersion: 'v1',
    wait,
    async abort(abortOptions: AbortOptions = {}) {
      record.aborts.push(abortOptions);
      if (!aborted) {
        aborted = true;
        abortRequested?.(capabilities.gracefulAbort ? (abortOptions.graceMs ?? 0) : 0);
      }
      await running;
    },
  };
}

function makeResultSet(
  record: MockSandboxRecord,
  exitCode: number | null,
  aborted: boolean,
  capabilities: EngineCapabilities,
  error?: Error,
): ResultSetV1 {
  const extractFile = async (path: string): Promise<ExtractedFile> => {
    need(capabilities, 'extract');
    const inside = await resolveInside(record.dir, path);
    if (!inside.ok) {
      if (inside.problem === 'missing') {
        throw Object.assign(new Error(`${path}: no such file in the sandbox`), { code: 'ENOENT' });
      }
      throw new MalformedPayloadError([{ pointer: '', message: inside.message }]);
    }
    const { size } = await import('node:fs/promises').then((fs) => fs.stat(inside.path));
    return { stream: createReadStream(inside.path), size, hostPath: inside.path };
  };
  const set: ResultSetV1 = {
    specificationVersion: 'v1',
    success: exitCode === 0 && !aborted && !error,
    exitCode,
    aborted,
    ...(error ? { error } : {}),
    ...(capabilities.extract
      ? {
          extractFile,
          async extractFolder(path, handler) {
            const inside = await resolveInside(record.dir, path);
            if (!inside.ok) {
              if (inside.problem === 'missing') {
                throw Object.assign(new Error(`${path}: no such folder in the sandbox`), { code: 'ENOENT' });
              }
              throw new MalformedPayloadError([{ pointer: '', message: inside.message }]);
            }
            for await (const entry of walkFiles(record.dir, inside.path)) {
              if (entry.kind === 'refused') await handler(entry.relPath, { refused: entry.message });
              else
                await handler(entry.relPath, {
                  stream: createReadStream(entry.path),
                  size: entry.size,
                  hostPath: entry.path,
                });
            }
          },
        }
      : {}),
    async dispose() {
      if (record.payload.disposeDelayMs) await sleep(record.payload.disposeDelayMs);
      record.disposed = true;
      await rm(record.dir, { recursive: true, force: true });
    },
  };
  return set;
}
