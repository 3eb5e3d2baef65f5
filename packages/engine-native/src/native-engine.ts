import { execFile } from 'node:child_process';
import { createReadStream, writeFileSync } from 'node:fs';
import {
  chmod,
  chown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  stat,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import {
  ConfigError,
  type EngineCapabilities,
  type EngineInitContext,
  type EngineV1,
  type ExtractedFile,
  InternalError,
  type Logger,
  MalformedPayloadError,
  type PayloadSchemaPart,
  type ProxySpec,
  type ResultSetV1,
  resolveInside,
  type SandboxBuilderV1,
  type SandboxOptions,
  type SandboxV1,
  silentLogger,
  type VolumeSpec,
  walkFiles,
} from '@tcw/core';
import { startTree, type TreeExit, type TreeProcess } from '@tcw/core/process';
import {
  type CgroupSupport,
  createTaskCgroup,
  setupCgroups,
  type TaskCgroup,
  type TaskLimits,
  teardownCgroups,
} from './cgroups.js';
import {
  createTaskUser,
  currentUser,
  deleteTaskUser,
  killUserProcesses,
  lookupUser,
  newTaskUserName,
  removeUserFiles,
  SHARED_TEMP_DIRS,
  type TaskUser,
} from './users.js';

const run = promisify(execFile);

export interface NativeEngineOptions {
  /**
   * Who runs the task: `current` (the worker's own user), `per-task` (a fresh user made for the task and deleted
   * after it; Linux, worker as root), or the name of an existing user (the worker must be root unless it is its own
   * name). Default: `per-task` when the worker runs as root on Linux, else `current`.
   */
  user?: string;
  /** Allow tasks to run as root (uid 0). Default false: the engine refuses to start if tasks would. */
  allowRoot?: boolean;
  /** Where task directories go. Default: `/home` for per-task users (their home), else `<workDir>/native-tasks`. */
  tasksDir?: string;
  /** Keep each task's directory after the task (for debugging). Default false. */
  keepTaskDirs?: boolean;
  /** Base environment of every task. Default: `{PATH: <the worker's PATH>}`. */
  env?: Record<string, string>;
  /** Seconds between SIGTERM and SIGKILL for processes still running when the task's commands are done. Default 5. */
  killGracePeriod?: number;
  /** `auto` (default): a cgroup per task where the host allows it; `off`: process groups / PID namespaces only. */
  cgroups?: 'auto' | 'off';
  /** Per-task limits through cgroups (needs cgroups with the controllers; the engine refuses to start otherwise). */
  limits?: TaskLimits;
}

type UserMode = { kind: 'current' } | { kind: 'per-task' } | { kind: 'named'; user: TaskUser };

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const FOLDER_PREFIX = 'task-';

/** The environment variable through which a task reaches the proxy attached under `name`. */
export function proxyEnvName(name: string): string {
  return `TCW_PROXY_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

function platformCapabilities(): EngineCapabilities {
  const posix = process.platform !== 'win32';
  return {
    env: true,
    volumes: true,
    proxies: true,
    files: true,
    extract: true,
    gracefulAbort: posix,
  };
}

const argvSchema = {
  type: 'array',
  minItems: 1,
  items: { type: 'string' },
  description: 'A command: the program and its arguments (no shell)',
};

function payloadSchema(): PayloadSchemaPart {
  return {
    properties: {
      command: {
        description:
          "One command (an argv array), or a list of commands run in order in the task directory, stopping at the first that fails (generic-worker's shape)",
        oneOf: [argvSchema, { type: 'array', minItems: 1, items: argvSchema }],
      },
    },
    required: ['command'],
  };
}

function commandsOf(payload: Record<string, unknown>): string[][] {
  const command = payload.command as string[] | string[][];
  return typeof command[0] === 'string' ? [command as string[]] : (command as string[][]);
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/** A relative path inside the task directory, for mount points and written files. */
function insidePath(dir: string, path: string, pointer: string): string {
  const clean = normalize(path);
  if (isAbsolute(path) || clean === '..' || clean.startsWith(`..${sep}`) || clean === '.' || clean === '') {
    throw new MalformedPayloadError([
      { pointer, message: `${JSON.stringify(path)} must be a relative path inside the task directory` },
    ]);
  }
  return join(dir, clean);
}

/**
 * The native engine: task commands run as host processes in a fresh directory, as the worker's user, a configured
 * user, or a fresh user per task; every process a task starts is ended with the task (a cgroup per task on Linux as
 * root; process groups or a PID namespace elsewhere).
 */
export function createNativeEngine(options: NativeEngineOptions = {}): EngineV1 {
  const isRoot = process.getuid?.() === 0;
  const linux = process.platform === 'linux';
  const allowRoot = options.allowRoot ?? false;
  const keepTaskDirs = options.keepTaskDirs ?? false;
  const graceMs = Math.round((options.killGracePeriod ?? 5) * 1000);
  const limits = options.limits ?? {};
  const wantedUser = options.user ?? (isRoot && linux ? 'per-task' : 'current');
  let logger: Logger = silentLogger;
  let userMode: UserMode | undefined;
  let tasksDir = options.tasksDir;
  let stateDir: string | undefined;
  let cgroups: CgroupSupport | undefined;
  let initialised: Promise<void> | undefined;

  const init = async (context?: EngineInitContext): Promise<void> => {
    if (context) logger = context.logger;
    const problems: Array<{ path: string; message: string }> = [];
    if (wantedUser === 'per-task') {
      if (!linux || !isRoot) {
        problems.push({
          path: 'engines.native.user',
          message: '`per-task` needs Linux and a worker running as root',
        });
      }
      userMode = { kind: 'per-task' };
    } else if (wantedUser === 'current') {
      userMode = { kind: 'current' };
      if (isRoot && !allowRoot) {
        problems.push({
          path: 'engines.native.user',
          message:
            'the worker runs as root, so `current` would run tasks as root: use `per-task` or a user name, or set allowRoot: true',
        });
      }
    } else {
      const user = await lookupUser(wantedUser);
      if (!user) {
        problems.push({
          path: 'engines.native.user',
          message: `no user named ${JSON.stringify(wantedUser)}`,
        });
      } else {
        if (user.uid === 0 && !allowRoot) {
          problems.push({
            path: 'engines.native.user',
            message: `${wantedUser} is root; set allowRoot: true`,
          });
        }
        if (!isRoot && user.uid !== process.getuid?.()) {
          problems.push({
            path: 'engines.native.user',
            message: `running as ${wantedUser} needs a root worker`,
          });
        }
      }
      userMode = user ? { kind: 'named', user } : { kind: 'current' };
    }
    const workDir = context?.workDir ?? (await mkdtemp(join(tmpdir(), 'tcw-native-')));
    tasksDir ??= userMode.kind === 'per-task' ? '/home' : join(workDir, 'native-tasks');
    stateDir = join(workDir, 'native-state');
    await mkdir(tasksDir, { recursive: true });
    await mkdir(stateDir, { recursive: true });
    if (userMode.kind !== 'current' && isRoot) {
      const blocked = await untraversable(tasksDir);
      if (blocked) {
        problems.push({
          path: 'engines.native.tasksDir',
          message: `task users cannot reach ${tasksDir}: ${blocked} is not searchable by others (chmod o+x, or choose another folder)`,
        });
      }
    }
    if (options.cgroups !== 'off') {
      const found = await setupCgroups(logger, workDir);
      if ('reason' in found) logger.info({ reason: found.reason }, 'no cgroups: tasks are process groups');
      else cgroups = found;
    }
    for (const key of ['memory', 'pids'] as const) {
      if (limits[key] !== undefined && !cgroups?.limits[key]) {
        problems.push({
          path: `engines.native.limits.${key}`,
          message: `this host cannot limit ${key} per task (${cgroups ? 'the controller is not available' : 'no usable cgroups'})`,
        });
      }
    }
    if (problems.length) throw new ConfigError(problems);
    await cleanLeftovers();
  };

  /**
   * A per-task user's end: its processes killed, what it left in /tmp and the like removed (it would outlive the user
   * and go to the next one given its uid) except `kept` (writable volumes), then the user and its home deleted.
   */
  const endTaskUser = async (name: string, uid: number | undefined, kept: string[], keepHome: boolean) => {
    if (uid !== undefined) {
      await killUserProcesses(uid);
      await removeUserFiles(uid, SHARED_TEMP_DIRS, kept);
    }
    await deleteTaskUser(name, keepHome);
  };

  /** The writable volumes recorded in a task user's marker file (empty when there were none). */
  const keptPaths = (text: string): string[] => {
    try {
      const keep = (JSON.parse(text) as { keep?: unknown }).keep;
      return Array.isArray(keep) ? keep.filter((k): k is string => typeof k === 'string') : [];
    } catch {
      return [];
    }
  };

  /** Users and folders a crashed predecessor (same work dir) left behind. */
  const cleanLeftovers = async () => {
    for (const name of await readdir(stateDir!).catch(() => [] as string[])) {
      const [kind, ...rest] = name.split(':');
      const value = rest.join(':');
      logger.info({ kind, value }, 'removing what a previous worker left behind');
      if (kind === 'user') {
        const user = await lookupUser(value);
        const kept = keptPaths(await readFile(join(stateDir!, name), 'utf8'));
        await endTaskUser(value, user?.uid, kept, keepTaskDirs).catch((error: Error) =>
          logger.warn({ user: value, err: error.message }, 'cannot remove a leftover task user'),
        );
      }
      await rm(join(stateDir!, name), { force: true });
    }
    if (userMode?.kind !== 'per-task') {
      for (const name of await readdir(tasksDir!).catch(() => [] as string[])) {
        if (name.startsWith(FOLDER_PREFIX) && !keepTaskDirs) {
          await rm(join(tasksDir!, name), { recursive: true, force: true });
        }
      }
    }
  };

  const ready = (context?: EngineInitContext) => {
    initialised ??= init(context);
    return initialised;
  };

  return {
    specificationVersion: 'v1',
    name: 'native',
    capabilities: platformCapabilities(),
    payloadSchema,
    init: (context) => ready(context),
    async newSandboxBuilder(opts: SandboxOptions): Promise<SandboxBuilderV1> {
      await ready();
      return newBuilder(opts);
    },
    async dispose() {
      if (cgroups) await teardownCgroups(cgroups).catch(() => {});
      // task users of sandboxes that were never disposed (a caller's bug, or a crash mid-task)
      if (initialised && stateDir) await initialised.then(cleanLeftovers, () => {});
    },
  };

  async function newBuilder(opts: SandboxOptions): Promise<SandboxBuilderV1> {
    let user: TaskUser;
    let dir: string;
    let marker: string | undefined;
    let runAs: { uid: number; gid: number } | undefined;
    if (userMode!.kind === 'per-task') {
      const name = newTaskUserName();
      dir = join(tasksDir!, name);
      marker = join(stateDir!, `user:${name}`);
      await writeFile(marker, '');
      try {
        user = await createTaskUser(name, dir);
      } catch (error) {
        await deleteTaskUser(name).catch(() => {});
        await rm(marker, { force: true });
        throw new InternalError(`cannot create the task user ${name}: ${(error as Error).message}`, {
          cause: error,
        });
      }
      runAs = { uid: user.uid, gid: user.gid };
    } else {
      user = userMode!.kind === 'named' ? userMode!.user : currentUser();
      dir = await mkdtemp(join(tasksDir!, `${FOLDER_PREFIX}${opts.task.taskId}-${opts.task.runId}-`));
      if (user.uid !== process.getuid?.()) {
        await chown(dir, user.uid, user.gid);
        runAs = { uid: user.uid, gid: user.gid };
      }
      await chmod(dir, 0o700);
    }
    const env: Record<string, string> = {
      ...(options.env ?? { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin' }),
      HOME: userMode!.kind === 'per-task' ? dir : user.home,
      USER: user.name,
      LOGNAME: user.name,
    };
    const volumes: Array<{ target: string; spec: VolumeSpec }> = [];
    /** Host folders the task may write to on purpose (caches): its files there are not leftovers. */
    const writableVolumes = () =>
      volumes.filter((v) => !v.spec.readOnly).map((v) => resolve(v.spec.hostPath));
    let state: 'building' | 'started' | 'discarded' = 'building';
    const release = async (keepDir = keepTaskDirs) => {
      if (marker) {
        await endTaskUser(user.name, user.uid, writableVolumes(), keepDir);
        await rm(marker, { force: true });
      } else if (!keepDir) {
        await rm(dir, { recursive: true, force: true });
      }
    };
    const building = () => {
      if (state !== 'building') throw new Error(`the sandbox builder is ${state}`);
    };
    return {
      specificationVersion: 'v1',
      setEnv(name, value) {
        building();
        if (!ENV_NAME.test(name)) {
          throw new MalformedPayloadError([
            {
              pointer: `/env/${name.replace(/~/g, '~0').replace(/\//g, '~1')}`,
              message: 'not a valid environment variable name',
            },
          ]);
        }
        env[name] = value;
      },
      attachVolume(mountPoint, volume) {
        building();
        const target = insidePath(dir, mountPoint, '/mounts');
        if (volumes.some((v) => v.target === target)) {
          throw new MalformedPayloadError([{ pointer: '/mounts', message: `two volumes at ${mountPoint}` }]);
        }
        volumes.push({ target, spec: volume });
        // a crashed worker's successor must keep them too when it cleans up after this user (see cleanLeftovers)
        if (marker) writeFileSync(marker, JSON.stringify({ keep: writableVolumes() }));
      },
      attachProxy(name, proxy: ProxySpec) {
        building();
        const variable = proxyEnvName(name);
        env[variable] = proxy.target;
        return proxy.target;
      },
      async writeFile(path, data, mode) {
        building();
        const target = insidePath(dir, path, '/files');
        await mkdir(dirname(target), { recursive: true });
        const real = await resolveInside(dir, dirname(target));
        if (!real.ok) throw new MalformedPayloadError([{ pointer: '/files', message: real.message }]);
        await writeFile(target, data, { mode: mode ?? 0o644 });
        if (runAs)
          await run('chown', ['-R', `${runAs.uid}:${runAs.gid}`, join(dir, normalize(path).split(sep)[0]!)]);
      },
      async start() {
        building();
        state = 'started';
        env.TASK_ID = opts.task.taskId;
        env.RUN_ID = String(opts.task.runId);
        env.TASK_WORKDIR = dir;
        let cgroup: TaskCgroup | undefined;
        const mounted: Mounted[] = [];
        try {
          if (cgroups) cgroup = await createTaskCgroup(cgroups, limits);
          for (const v of volumes) mounted.push(await mountVolume(v.target, v.spec, runAs, opts));
        } catch (error) {
          await unmountAll(mounted, opts.logger);
          await cgroup?.remove();
          await release();
          throw new InternalError(`cannot prepare the task: ${(error as Error).message}`, { cause: error });
        }
        return startCommands({
          commands: commandsOf(opts.payload),
          dir,
          env,
          runAs,
          cgroup,
          mounted,
          opts,
          graceMs,
          release,
          ...(limits.memory !== undefined ? { memoryLimit: limits.memory } : {}),
        });
      },
      async discard() {
        if (state === 'discarded') return;
        const wasBuilding = state === 'building';
        state = 'discarded';
        if (wasBuilding) await release();
      },
    };
  }
}

/** The first ancestor of `dir` (itself included) that other users cannot search, if any. */
async function untraversable(dir: string): Promise<string | undefined> {
  let current = dir;
  for (;;) {
    if (((await stat(current)).mode & 0o001) === 0) return current;
    const parent = dirname(current);
    if (parent === current) return undefined;
    current = parent;
  }
}

interface Mounted {
  target: string;
  hostPath: string;
  how: 'bind' | 'moved';
}

async function mountVolume(
  target: string,
  spec: VolumeSpec,
  runAs: { uid: number; gid: number } | undefined,
  opts: SandboxOptions,
): Promise<Mounted> {
  if (await exists(target)) throw new Error(`the mount point ${target} exists already`);
  await mkdir(dirname(target), { recursive: true });
  if (runAs && !spec.readOnly) await run('chown', ['-R', `${runAs.uid}:${runAs.gid}`, spec.hostPath]);
  if (process.platform === 'linux' && process.getuid?.() === 0) {
    await mkdir(target);
    await run('mount', ['--bind', spec.hostPath, target]);
    if (spec.readOnly) await run('mount', ['-o', 'remount,bind,ro', target]);
    return { target, hostPath: spec.hostPath, how: 'bind' };
  }
  if (spec.readOnly)
    opts.log.warn(`volume ${target}: read-only is not enforced without bind mounts (root on Linux)`);
  await rename(spec.hostPath, target);
  return { target, hostPath: spec.hostPath, how: 'moved' };
}

async function unmountAll(mounted: Mounted[], logger: Logger): Promise<string[]> {
  const failures: string[] = [];
  for (const m of mounted.reverse()) {
    try {
      if (m.how === 'bind') {
        await run('umount', [m.target]);
        await rmdir(m.target); // never recursive: if anything is still mounted there, it stays
      } else {
        await rename(m.target, m.hostPath);
      }
    } catch (error) {
      logger.error({ target: m.target, err: (error as Error).message }, 'cannot release a volume');
      failures.push(`${m.target}: ${(error as Error).message}`);
    }
  }
  return failures;
}

interface RunSpec {
  commands: string[][];
  dir: string;
  env: Record<string, string>;
  runAs: { uid: number; gid: number } | undefined;
  cgroup: TaskCgroup | undefined;
  mounted: Mounted[];
  opts: SandboxOptions;
  graceMs: number;
  memoryLimit?: number;
  /** Deletes the task user and directory; `keepDir` keeps the directory (default: the `keepTaskDirs` option). */
  release(keepDir?: boolean): Promise<void>;
}

function startCommands(spec: RunSpec): SandboxV1 {
  const { opts, dir } = spec;
  let aborted = false;
  let current: TreeProcess | undefined;
  const trees: TreeProcess[] = [];
  const streams: Array<Promise<unknown>> = [];
  let abortGrace = 0;

  const runAll = async (): Promise<{ exit: TreeExit | undefined; index: number }> => {
    let exit: TreeExit | undefined;
    let index = 0;
    for (; index < spec.commands.length && !aborted; index++) {
      const argv = spec.commands[index]!;
      if (spec.commands.length > 1) {
        opts.log.info(`running command ${index + 1} of ${spec.commands.length}: ${JSON.stringify(argv)}`);
      }
      let tree: TreeProcess;
      try {
        tree = await startTree(argv, {
          cwd: dir,
          env: spec.env,
          isolation: spec.cgroup ? 'cgroup' : 'auto',
          ...(spec.runAs ? { user: spec.runAs } : {}),
          ...(spec.cgroup ? { cgroups: spec.cgroup.dirs } : {}),
        });
      } catch (error) {
        opts.log.error(`cannot start ${JSON.stringify(argv[0])}: ${(error as Error).message}`);
        return { exit: { code: 127, signal: null }, index };
      }
      current = tree;
      trees.push(tree);
      // aborted while the command was being started: abort() found no tree to end, so end this one
      if (aborted) void tree.terminate(abortGrace);
      tree.stdout.on('data', (chunk: Buffer) => opts.log.write(chunk));
      tree.stderr.on('data', (chunk: Buffer) => opts.log.write(chunk));
      streams.push(
        new Promise((r) => tree.stdout.once('close', r)),
        new Promise((r) => tree.stderr.once('close', r)),
      );
      exit = await tree.exited;
      if (aborted) break;
      if (exit.code !== 0) {
        const how = exit.code === null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
        if (exit.code === 127) opts.log.error(`command ${JSON.stringify(argv[0])} exited 127 (not found?)`);
        if (index + 1 < spec.commands.length) {
          opts.log.error(
            `command ${index + 1} ${how}; the remaining ${spec.commands.length - index - 1} are not run`,
          );
        }
        break;
      }
    }
    return { exit, index };
  };

  const endLeftovers = async (grace: number): Promise<number> => {
    let count = 0;
    if (spec.cgroup && current) {
      count = (await current.pids()).length;
      if (count) await current.terminate(grace);
    } else {
      for (const tree of trees) {
        const pids = await tree.pids();
        count += pids.length;
        if (pids.length) await tree.terminate(grace);
      }
    }
    // without a cgroup, a task user's processes that left the group or namespace are found by their uid
    if (!spec.cgroup && spec.runAs && process.getuid?.() === 0 && spec.runAs.uid !== 0) {
      count += await killUserProcesses(spec.runAs.uid).catch(() => 0);
    }
    return count;
  };

  const finish = async (): Promise<ResultSetV1> => {
    const { exit } = await runAll();
    const left = await endLeftovers(aborted ? abortGrace : spec.graceMs);
    if (left > 0 && !aborted) opts.log.info(`ended ${left} process(es) the task left running`);
    await Promise.race([Promise.all(streams), new Promise((r) => setTimeout(r, 2000).unref())]);
    const oom = (await spec.cgroup?.oomKilled()) ?? false;
    if (oom) {
      opts.log.error(
        `the task was killed: it used more than its memory limit (${spec.memoryLimit} bytes); the kernel's OOM killer ended it`,
      );
    }
    const failures = await unmountAll(spec.mounted, opts.logger);
    let error: Error | undefined;
    if (failures.length) error = new InternalError(`cannot release volumes: ${failures.join('; ')}`);
    await spec.cgroup
      ?.remove()
      .catch((e: Error) => opts.logger.warn({ err: e.message }, 'cannot remove the task cgroup'));
    const exitCode = aborted || !exit ? null : exit.code;
    return {
      specificationVersion: 'v1',
      success: !aborted && !oom && exit?.code === 0 && !error,
      exitCode,
      aborted,
      ...(error ? { error } : {}),
      extractFile: (path) => extractFile(dir, path),
      extractFolder: (path, handler) => extractFolder(dir, path, handler),
      async dispose() {
        if (disposed) return disposed;
        // never delete a directory with a volume still mounted in it
        disposed = spec.release(failures.length > 0 || undefined);
        return disposed;
      },
    };
  };
  let disposed: Promise<void> | undefined;
  const result = finish();
  return {
    specificationVersion: 'v1',
    wait: () => result,
    async abort(options = {}) {
      if (!aborted) {
        aborted = true;
        abortGrace = options.graceMs ?? 0;
        await current?.terminate(abortGrace);
      }
      await result;
    },
  };
}

async function fileOf(path: string): Promise<ExtractedFile> {
  const info = await stat(path);
  return { stream: createReadStream(path), size: info.size, hostPath: path };
}

async function extractFile(dir: string, path: string): Promise<ExtractedFile> {
  const inside = await resolveInside(dir, path);
  if (!inside.ok) {
    if (inside.problem === 'missing') {
      throw Object.assign(new Error(inside.message), { code: 'ENOENT' });
    }
    throw new MalformedPayloadError([{ pointer: '/artifacts', message: inside.message }]);
  }
  const info = await stat(inside.path);
  if (info.isDirectory()) {
    // inside the task directory, so not a MalformedPayloadError (ResultSetV1: that is for paths leaving it)
    throw Object.assign(new Error(`${JSON.stringify(path)} is a folder`), { code: 'EISDIR' });
  }
  if (!info.isFile()) {
    throw new MalformedPayloadError([
      { pointer: '/artifacts', message: `${JSON.stringify(path)} is not a file` },
    ]);
  }
  return fileOf(inside.path);
}

async function extractFolder(
  dir: string,
  path: string,
  handler: (relPath: string, file: ExtractedFile | { refused: string }) => Promise<void>,
): Promise<void> {
  const inside = await resolveInside(dir, path);
  if (!inside.ok) {
    if (inside.problem === 'missing') throw Object.assign(new Error(inside.message), { code: 'ENOENT' });
    throw new MalformedPayloadError([{ pointer: '/artifacts', message: inside.message }]);
  }
  if (!(await stat(inside.path)).isDirectory()) {
    throw Object.assign(new Error(`${JSON.stringify(path)} is not a folder`), { code: 'ENOTDIR' });
  }
  for await (const entry of walkFiles(dir, inside.path)) {
    if (entry.kind === 'refused') await handler(entry.relPath, { refused: entry.message });
    else await handler(entry.relPath, await fileOf(entry.path));
  }
}
