import { Writable } from 'node:stream';
import {
  type AbortOptions,
  type EngineCapabilities,
  type EngineInitContext,
  type EngineV1,
  FatalError,
  InternalError,
  type Logger,
  MalformedPayloadError,
  type PayloadProblem,
  type PayloadSchemaPart,
  type ProxySpec,
  type ResultSetV1,
  type SandboxBuilderV1,
  type SandboxOptions,
  type SandboxV1,
  silentLogger,
  TcwError,
  type VolumeSpec,
  type WorkerIdentity,
} from '@tcw/core';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { containerPath, extractFile, extractFolder } from './extract.js';
import { dockerMessage, ImageManager, type ImageSpec, type RegistryAuth } from './images.js';

/** Devices a task may ask for (docker-worker's `capabilities.devices`), when the config allows them. */
export const DEVICES = ['kvm', 'hostSharedMemory', 'loopbackVideo', 'loopbackAudio'] as const;
export type DeviceName = (typeof DEVICES)[number];

export interface DockerEngineOptions {
  /** dockerd's socket (default `/var/run/docker.sock`). */
  socketPath?: string;
  /** Memory limit per task, in MiB (default: none). */
  memoryMb?: number;
  /** CPUs per task, fractional allowed (default: none). */
  cpus?: number;
  /** Most processes per task (default: none). */
  pidsLimit?: number;
  /** Docker network mode of task containers (default `bridge`). */
  network?: string;
  /** May tasks ask for `capabilities.privileged` (with scope `docker-worker:capability:privileged`)? Default false. */
  allowPrivileged?: boolean;
  /** Devices tasks may ask for (each with scope `docker-worker:capability:device:<name>`). Default none. */
  allowDevices?: DeviceName[];
  /** Credentials by registry host (`docker.io`, `ghcr.io`, `127.0.0.1:5000`) for pulls of private images. */
  registries?: Record<string, RegistryAuth>;
  /** Total size of the images this engine pulled or loaded, in MiB, above which the least recently used go. */
  imageCacheMaxMb?: number;
}

export const LABELS = {
  engine: 'tcw.engine',
  worker: 'tcw.worker',
  taskId: 'tcw.task-id',
  runId: 'tcw.run-id',
} as const;

const capabilities: EngineCapabilities = {
  env: true,
  volumes: true,
  proxies: true,
  files: true,
  extract: true,
  gracefulAbort: true,
};

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PROXY_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** The value of the worker label: who owns a container. */
export function workerLabel(worker: WorkerIdentity): string {
  return `${worker.taskQueueId}/${worker.workerGroup}/${worker.workerId}`;
}

function statusOf(error: unknown): number | undefined {
  return (error as { statusCode?: number }).statusCode;
}

/** Does one of the task's scopes (`*` at the end matches any suffix) satisfy `needed`? */
export function hasScope(scopes: readonly string[], needed: string): boolean {
  return scopes.some((s) => s === needed || (s.endsWith('*') && needed.startsWith(s.slice(0, -1))));
}

export const payloadSchemaPart: PayloadSchemaPart = {
  properties: {
    image: {
      description:
        'A docker image name (used if present, otherwise pulled) or a `docker save` tarball that another task uploaded',
      oneOf: [
        { type: 'string', minLength: 1 },
        {
          type: 'object',
          additionalProperties: false,
          required: ['type', 'taskId', 'path'],
          properties: {
            type: { const: 'task-image' },
            taskId: {
              type: 'string',
              pattern: '^[A-Za-z0-9_-]{1,64}$',
              description: 'The task that uploaded the tarball',
            },
            path: { type: 'string', minLength: 1 },
          },
        },
      ],
    },
    command: {
      description: "The command to run (argv, no shell); the image's default when absent",
      type: 'array',
      items: { type: 'string' },
    },
    capabilities: {
      description:
        'Privileges the task asks for; the worker config must allow each, and the task needs its scope',
      type: 'object',
      additionalProperties: false,
      properties: {
        privileged: { type: 'boolean' },
        devices: {
          type: 'object',
          additionalProperties: false,
          properties: Object.fromEntries(DEVICES.map((d) => [d, { type: 'boolean' }])),
        },
      },
    },
  },
  required: ['image'],
};

interface DevicePlan {
  Devices: Array<{ PathOnHost: string; PathInContainer: string; CgroupPermissions: string }>;
  Binds: string[];
}

function devicePlan(devices: readonly DeviceName[]): DevicePlan {
  const plan: DevicePlan = { Devices: [], Binds: [] };
  const dev = (path: string) =>
    plan.Devices.push({ PathOnHost: path, PathInContainer: path, CgroupPermissions: 'rwm' });
  for (const d of devices) {
    if (d === 'kvm') dev('/dev/kvm');
    else if (d === 'hostSharedMemory') plan.Binds.push('/dev/shm:/dev/shm');
    else if (d === 'loopbackVideo') dev('/dev/video0');
    else if (d === 'loopbackAudio') dev('/dev/snd');
  }
  return plan;
}

/** A docker engine with extra methods for the app and tests. */
export interface DockerEngine extends EngineV1 {
  /** Throws a clear error when dockerd cannot be reached. */
  checkDaemon(): Promise<void>;
  /** Removes every container and volume labelled as this worker's (a crashed predecessor's leftovers). */
  removeLeftovers(worker: WorkerIdentity): Promise<number>;
  readonly docker: Docker;
}

/**
 * The docker engine: each task runs in a fresh container of the payload's `image` (docker-worker's payload: `image`,
 * `command`, `capabilities`); output streams live into the task log; the container and its anonymous volumes are
 * removed after the task; every container carries labels naming the worker and the task.
 */
export function createDockerEngine(options: DockerEngineOptions = {}): DockerEngine {
  const socketPath = options.socketPath ?? '/var/run/docker.sock';
  const docker = new Docker({ socketPath });
  let logger: Logger = silentLogger;
  const images = new ImageManager(docker, {
    logger,
    ...(options.registries ? { registries: options.registries } : {}),
    ...(options.imageCacheMaxMb !== undefined ? { maxBytes: options.imageCacheMaxMb * 1024 * 1024 } : {}),
  });
  const allowedDevices = new Set(options.allowDevices ?? []);

  async function checkDaemon(): Promise<void> {
    try {
      await docker.ping();
    } catch (error) {
      throw new FatalError(
        `cannot reach dockerd at unix://${socketPath}: ${(error as Error).message}. Is the Docker daemon running, ` +
          'and may this user use its socket? (engines.docker.socketPath)',
        { cause: error },
      );
    }
  }

  async function removeLeftovers(worker: WorkerIdentity): Promise<number> {
    const filters = { label: [`${LABELS.worker}=${workerLabel(worker)}`] };
    const containers = await docker.listContainers({ all: true, filters });
    for (const c of containers) {
      logger.info({ container: c.Id, labels: c.Labels }, 'removing a container left by a previous worker');
      await docker
        .getContainer(c.Id)
        .remove({ force: true, v: true })
        .catch((error: unknown) => {
          if (statusOf(error) !== 404) throw error;
        });
    }
    const volumes = await docker.listVolumes({ filters });
    for (const v of volumes.Volumes ?? []) {
      await docker
        .getVolume(v.Name)
        .remove()
        .catch((error: unknown) =>
          logger.warn({ volume: v.Name, error: dockerMessage(error) }, 'cannot remove'),
        );
    }
    return containers.length;
  }

  return {
    specificationVersion: 'v1',
    name: 'docker',
    capabilities,
    docker,
    checkDaemon,
    removeLeftovers,
    payloadSchema: () => payloadSchemaPart,
    async init(context: EngineInitContext) {
      logger = context.logger;
      await checkDaemon();
      await images.init(context.workDir, context.logger);
      await removeLeftovers(context.worker);
    },
    async newSandboxBuilder(opts: SandboxOptions): Promise<SandboxBuilderV1> {
      const payload = opts.payload as {
        image: ImageSpec;
        command?: string[];
        capabilities?: { privileged?: boolean; devices?: Partial<Record<DeviceName, boolean>> };
      };
      const scopes = opts.task.task.scopes ?? [];
      const problems: PayloadProblem[] = [];
      const privileged = payload.capabilities?.privileged === true;
      if (privileged) {
        const scope = 'docker-worker:capability:privileged';
        if (!options.allowPrivileged) {
          problems.push({
            pointer: '/capabilities/privileged',
            message: 'this worker does not run privileged containers (engines.docker.allowPrivileged is off)',
          });
        } else if (
          !hasScope(scopes, scope) &&
          !hasScope(scopes, `${scope}:${opts.task.worker.taskQueueId}`)
        ) {
          problems.push({
            pointer: '/capabilities/privileged',
            message: `the task lacks the scope ${scope}`,
          });
        }
      }
      const devices: DeviceName[] = [];
      for (const [name, wanted] of Object.entries(payload.capabilities?.devices ?? {})) {
        if (!wanted) continue;
        const device = name as DeviceName;
        const scope = `docker-worker:capability:device:${device}`;
        if (!allowedDevices.has(device)) {
          problems.push({
            pointer: `/capabilities/devices/${device}`,
            message: `this worker does not allow the device ${device} (engines.docker.allowDevices)`,
          });
        } else if (
          !hasScope(scopes, scope) &&
          !hasScope(scopes, `${scope}:${opts.task.worker.taskQueueId}`)
        ) {
          problems.push({
            pointer: `/capabilities/devices/${device}`,
            message: `the task lacks the scope ${scope}`,
          });
        } else devices.push(device);
      }
      if (problems.length) throw new MalformedPayloadError(problems);

      const imageId = await images.resolve({
        image: payload.image,
        log: opts.log,
        signal: opts.signal,
        rootUrl: opts.task.rootUrl,
        ...(opts.credentials ? { credentials: opts.credentials } : {}),
      });
      images.acquire(imageId);

      const env = new Map<string, string>([
        ['TASK_ID', opts.task.taskId],
        ['RUN_ID', String(opts.task.runId)],
        ['TASKCLUSTER_ROOT_URL', opts.task.rootUrl],
        ['TASKCLUSTER_WORKER_GROUP', opts.task.worker.workerGroup],
        ['TASKCLUSTER_WORKER_ID', opts.task.worker.workerId],
      ]);
      const mounts = new Map<string, VolumeSpec>();
      const extraHosts: string[] = [];
      const files: Array<{ path: string; data: Buffer; mode: number }> = [];
      let state: 'building' | 'started' | 'discarded' = 'building';
      const usable = () => {
        if (state !== 'building') throw new InternalError(`the sandbox builder is ${state}`);
      };

      return {
        specificationVersion: 'v1',
        setEnv(name: string, value: string) {
          usable();
          if (!ENV_NAME.test(name)) {
            throw new MalformedPayloadError([
              { pointer: `/env/${name}`, message: `"${name}" is not a valid environment variable name` },
            ]);
          }
          env.set(name, value);
        },
        attachVolume(mountPoint: string, volume: VolumeSpec) {
          usable();
          let target: string;
          try {
            target = containerPath(mountPoint);
          } catch {
            throw new MalformedPayloadError(
              `${mountPoint}: a mount point must be an absolute path without ".."`,
            );
          }
          if (target === '/') throw new MalformedPayloadError('a volume cannot be mounted at /');
          for (const existing of mounts.keys()) {
            if (
              existing === target ||
              existing.startsWith(`${target}/`) ||
              target.startsWith(`${existing}/`)
            ) {
              throw new MalformedPayloadError(`mount point ${target} clashes with ${existing}`);
            }
          }
          mounts.set(target, volume);
        },
        attachProxy(name: string, proxy: ProxySpec): string {
          usable();
          if (!PROXY_NAME.test(name)) throw new MalformedPayloadError(`"${name}" is not a valid proxy name`);
          const target = new URL(proxy.target);
          let url: string;
          if ((options.network ?? 'bridge') === 'host') {
            url = `${target.protocol}//${target.host}`;
          } else {
            // the host's loopback is not reachable from a container: the name resolves to the host's gateway
            // address, where the proxy must listen too (0.0.0.0, or the docker bridge's address)
            extraHosts.push(`${name}:host-gateway`);
            url = `${target.protocol}//${name}${target.port ? `:${target.port}` : ''}`;
          }
          env.set(`TCW_PROXY_${name.toUpperCase().replace(/-/g, '_')}`, url);
          return url;
        },
        async writeFile(path: string, data: string | Uint8Array, mode = 0o644) {
          usable();
          files.push({ path: containerPath(path), data: Buffer.from(data), mode });
        },
        async start(): Promise<SandboxV1> {
          usable();
          state = 'started';
          const binds = [...mounts].map(
            ([target, v]) => `${v.hostPath}:${target}:${v.readOnly ? 'ro' : 'rw'}`,
          );
          const plan = devicePlan(devices);
          const labels = {
            [LABELS.engine]: 'docker',
            [LABELS.worker]: workerLabel(opts.task.worker),
            [LABELS.taskId]: opts.task.taskId,
            [LABELS.runId]: String(opts.task.runId),
          };
          let container: Docker.Container;
          try {
            container = await docker.createContainer({
              name: `tcw-${opts.task.taskId}-${opts.task.runId}-${Math.random().toString(36).slice(2, 8)}`,
              Image: imageId,
              ...(payload.command ? { Cmd: payload.command } : {}),
              Env: [...env].map(([k, v]) => `${k}=${v}`),
              Labels: labels,
              AttachStdout: true,
              AttachStderr: true,
              Tty: false,
              OpenStdin: false,
              HostConfig: {
                Binds: [...binds, ...plan.Binds],
                Devices: plan.Devices,
                Privileged: privileged,
                NetworkMode: options.network ?? 'bridge',
                ExtraHosts: extraHosts,
                ...(options.memoryMb !== undefined ? { Memory: options.memoryMb * 1024 * 1024 } : {}),
                ...(options.cpus !== undefined ? { NanoCpus: Math.round(options.cpus * 1e9) } : {}),
                ...(options.pidsLimit !== undefined ? { PidsLimit: options.pidsLimit } : {}),
                LogConfig: { Type: 'none', Config: {} },
              },
            });
          } catch (error) {
            images.release(imageId);
            if (statusOf(error) === 400) {
              const message = dockerMessage(error);
              throw new MalformedPayloadError([
                {
                  pointer: /command/i.test(message) ? '/command' : '',
                  message: /no command/i.test(message)
                    ? 'the image has no default command: the payload must give one'
                    : `dockerd refused the container: ${message}`,
                },
              ]);
            }
            throw new InternalError(`dockerd cannot create the container: ${dockerMessage(error)}`, {
              cause: error,
            });
          }
          return runContainer(docker, container, files, opts, logger, () => images.release(imageId));
        },
        async discard() {
          if (state === 'discarded') return;
          if (state === 'building') images.release(imageId);
          state = 'discarded';
        },
      };
    },
  };
}

function logWritable(write: (chunk: Buffer) => void): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      write(chunk);
      callback();
    },
  });
}

async function runContainer(
  docker: Docker,
  container: Docker.Container,
  files: Array<{ path: string; data: Buffer; mode: number }>,
  opts: SandboxOptions,
  logger: Logger,
  release: () => void,
): Promise<SandboxV1> {
  let removed: Promise<void> | undefined;
  const remove = () => {
    removed ??= container
      .remove({ force: true, v: true })
      .catch((error: unknown) => {
        if (statusOf(error) !== 404) {
          logger.warn(
            { container: container.id, error: dockerMessage(error) },
            'cannot remove the container',
          );
          throw error;
        }
      })
      .finally(release);
    return removed;
  };
  let aborted = false;
  let startError: Error | undefined;
  let streamEnded: Promise<void> = Promise.resolve();
  let waiting: Promise<unknown> = Promise.resolve({ StatusCode: 0 });
  try {
    if (files.length) {
      const pack = tar.pack();
      for (const f of files) pack.entry({ name: f.path.slice(1), mode: f.mode, size: f.data.length }, f.data);
      pack.finalize();
      await container.putArchive(pack, { path: '/' });
    }
    const stream = (await container.attach({
      stream: true,
      stdout: true,
      stderr: true,
    })) as NodeJS.ReadableStream;
    streamEnded = new Promise<void>((resolve) => {
      stream.once('end', () => resolve());
      stream.once('close', () => resolve());
      stream.once('error', () => resolve());
    });
    const out = logWritable((chunk) => opts.log.write(chunk));
    docker.modem.demuxStream(stream, out, out);
    // like the docker CLI: wait for the next exit before starting, so that even an instant exit is seen
    waiting = container.wait({ condition: 'next-exit' });
    waiting.catch(() => undefined);
    await container.start();
  } catch (error) {
    if (statusOf(error) === undefined) {
      await remove().catch(() => undefined);
      throw new InternalError(`cannot start the container: ${dockerMessage(error)}`, { cause: error });
    }
    // dockerd refused to start it. The command does not exist or is not executable: the task's own failure (exit
    // code 127 or 126, like the docker CLI). Anything else (the runtime cannot apply the requested privileges, say):
    // ours, an internal error. The container stays until dispose, for inspection.
    startError = error as Error;
  }

  const startMessage = startError ? dockerMessage(startError) : '';
  const execProblem = /exec|executable file not found|no such file or directory|permission denied/i.test(
    startMessage,
  );
  // the task's own failure needs saying in its log; an internal error's message reaches the log with the error
  if (startError && execProblem) opts.log.error(`the container did not start: ${startMessage}`);
  const exited: Promise<{ code: number | null; oomKilled: boolean }> = startError
    ? execProblem
      ? Promise.resolve({ code: /not found|no such file/i.test(startMessage) ? 127 : 126, oomKilled: false })
      : Promise.reject(new InternalError(`dockerd could not start the container: ${startMessage}`))
    : (async () => {
        const status = (await waiting) as { StatusCode: number };
        // 137 = SIGKILL, which is what the OOM killer sends: only then is it worth asking why
        const info = status.StatusCode === 137 ? await container.inspect().catch(() => undefined) : undefined;
        return { code: status.StatusCode, oomKilled: info?.State?.OOMKilled === true };
      })();

  exited.catch(() => undefined); // handled in finish(); no unhandled rejection before wait() is called
  let result: Promise<ResultSetV1> | undefined;
  const finish = async (): Promise<ResultSetV1> => {
    let exit: { code: number | null; oomKilled: boolean };
    let error: Error | undefined;
    try {
      exit = await exited;
    } catch (e) {
      exit = { code: null, oomKilled: false };
      error = TcwError.isInstance(e)
        ? e
        : new InternalError(`lost track of the container: ${dockerMessage(e)}`, { cause: e });
    }
    if (!startError) await Promise.race([streamEnded, new Promise((r) => setTimeout(r, 5000).unref())]);
    if (exit.oomKilled)
      opts.log.error('the container ran out of memory (engines.docker.memoryMb) and was killed');
    return {
      specificationVersion: 'v1',
      success: !aborted && !error && exit.code === 0,
      exitCode: aborted ? null : exit.code,
      aborted,
      ...(error ? { error } : {}),
      extractFile: (path: string) => extractFile(container, path),
      extractFolder: (path, handler) => extractFolder(container, path, handler),
      dispose: remove,
    };
  };

  return {
    specificationVersion: 'v1',
    wait() {
      result ??= finish();
      return result;
    },
    async abort(abortOptions: AbortOptions = {}) {
      aborted = true;
      const graceMs = abortOptions.graceMs ?? 10_000;
      try {
        if (graceMs <= 0) await container.kill({ signal: 'SIGKILL' });
        else await container.stop({ t: Math.max(1, Math.ceil(graceMs / 1000)) });
      } catch (error) {
        // 304: already stopped; 404: gone; 409: not running
        if (![304, 404, 409].includes(statusOf(error) ?? 0)) {
          throw new InternalError(`cannot stop the container: ${dockerMessage(error)}`, { cause: error });
        }
      }
      await exited.catch(() => undefined);
    },
  };
}
