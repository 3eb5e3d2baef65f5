/**
 * Per-task cgroups on Linux (as root). The task joins its cgroup before its command runs (see `spawnTree`'s
 * `cgroups` option), so every process it starts stays a member, whatever it does, and `cgroup.kill` ends them all.
 *
 * Two host layouts are handled:
 * - **pure cgroup v2** (`/sys/fs/cgroup` is `cgroup2`): tasks go in `<own cgroup>/tcw-native-<w>/task-<n>` (`<w>`: 12 hex
 *   digits of the work folder's sha256, see `cgroupName`). For
 *   limits the `memory` and `pids` controllers must reach that folder; when the worker's own cgroup cannot host
 *   children with controllers (it holds processes: the "no internal processes" rule), the worker moves itself into
 *   a leaf `<own>/tcw-worker-<pid>` first and enables the controllers in `<own>/cgroup.subtree_control`.
 * - **hybrid** (v1 controllers plus `cgroup2` at `/sys/fs/cgroup/unified`): membership and `cgroup.kill` use the
 *   v2 tree; limits use the v1 `memory` and `pids` hierarchies (`memory.limit_in_bytes`, `pids.max`).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from '@tcw/core';

export interface TaskLimits {
  /** Bytes of memory (RAM; swap is not allowed on top where the host lets us say so). */
  memory?: number;
  /** Processes and threads at once. */
  pids?: number;
}

export interface CgroupSupport {
  kind: 'v2' | 'hybrid';
  /** Where this worker's task cgroups go (v2). */
  base: string;
  /** v1 hierarchy folders for this worker (hybrid only), when the host has them. */
  memoryV1?: string;
  pidsV1?: string;
  /** Which limits can be applied. */
  limits: { memory: boolean; pids: boolean };
}

export interface TaskCgroup {
  /** The folders the task joins; the first is the v2 one. */
  readonly dirs: string[];
  /** Whether the kernel killed a process of the task for memory. */
  oomKilled(): Promise<boolean>;
  /** Removes the folders (the task's processes must be gone). */
  remove(): Promise<void>;
}

interface Mount {
  point: string;
  fstype: string;
  superOptions: string[];
}

async function mounts(): Promise<Mount[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [left, right = ''] = line.split(' - ');
      const fields = left!.split(' ');
      const [fstype = '', , superOpts = ''] = right.split(' ');
      return { point: fields[4]!, fstype, superOptions: superOpts.split(',') };
    });
}

async function ownCgroups(): Promise<Map<string, string>> {
  const map = new Map<string, string>();
  for (const line of (await readFile('/proc/self/cgroup', 'utf8')).split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '') map.set('', m[2]!);
    for (const c of m[1]!.split(',')) if (c) map.set(c, m[2]!);
  }
  return map;
}

async function readWords(path: string): Promise<string[]> {
  try {
    return (await readFile(path, 'utf8')).trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

async function rmdirRetry(dir: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await rmdir(dir);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || i >= 100) throw error;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Kills and removes a cgroup folder and its children (from a worker that is gone). */
async function destroyTree(dir: string): Promise<void> {
  let entries: string[] = [];
  try {
    entries = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return;
  }
  for (const name of entries) await destroyTree(join(dir, name));
  if (existsSync(join(dir, 'cgroup.kill'))) await writeFile(join(dir, 'cgroup.kill'), '1').catch(() => {});
  else for (const pid of await readWords(join(dir, 'cgroup.procs'))) signal(Number(pid), 'SIGKILL');
  await rmdirRetry(dir).catch(() => {});
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
}

const PREFIX = 'tcw-native-';

/**
 * The name of a worker's cgroup folders: derived from its work folder, which one worker at a time holds (the work
 * folder's lock), so a worker finds exactly what its crashed predecessor left and never touches another worker's.
 */
export function cgroupName(owner: string): string {
  return `${PREFIX}${createHash('sha256').update(resolve(owner)).digest('hex').slice(0, 12)}`;
}

/** Kills and removes what a previous worker on the same work folder left under `dir`, if anything. */
async function cleanPredecessor(dir: string, logger: Logger): Promise<void> {
  if (!existsSync(dir)) return;
  logger.info({ cgroup: dir }, 'removing the cgroups a previous worker on this work folder left behind');
  await destroyTree(dir);
}

/**
 * Finds the host's cgroup layout and prepares this worker's folders, named after `owner` (its work folder) after
 * removing what a crashed worker on that folder left there. Returns the reason when cgroups cannot be used (not
 * Linux, not root, no cgroup v2 mount, a read-only cgroup filesystem).
 */
export async function setupCgroups(
  logger: Logger,
  owner: string,
): Promise<CgroupSupport | { reason: string }> {
  if (process.platform !== 'linux') return { reason: `cgroups are Linux only (this is ${process.platform})` };
  if (process.getuid?.() !== 0) return { reason: 'the worker does not run as root' };
  const all = await mounts();
  const v2 = all.find((m) => m.fstype === 'cgroup2');
  if (!v2) return { reason: 'no cgroup v2 filesystem is mounted' };
  const own = await ownCgroups();
  const ownV2 = own.get('') ?? '/';
  const ownDir = join(v2.point, ownV2);
  const hybrid = all.some((m) => m.fstype === 'cgroup');
  const name = cgroupName(owner);
  const base = join(ownDir, name);
  try {
    await cleanPredecessor(base, logger);
    if (!hybrid) await enableV2Controllers(ownDir, ownV2 === '/', logger);
    await mkdir(base, { recursive: true });
  } catch (error) {
    return { reason: `cannot make cgroups under ${ownDir}: ${(error as Error).message}` };
  }
  if (!existsSync(join(base, 'cgroup.kill'))) {
    await rmdirRetry(base).catch(() => {});
    return { reason: 'the kernel has no cgroup.kill (Linux < 5.14)' };
  }
  if (!hybrid) {
    const controllers = await readWords(join(ownDir, 'cgroup.subtree_control'));
    const wanted = ['memory', 'pids'].filter((c) => controllers.includes(c));
    if (wanted.length) {
      await writeFile(join(base, 'cgroup.subtree_control'), wanted.map((c) => `+${c}`).join(' ')).catch(
        (error: Error) => logger.warn({ err: error.message }, 'cannot enable cgroup controllers for tasks'),
      );
    }
    const enabled = await readWords(join(base, 'cgroup.subtree_control'));
    return {
      kind: 'v2',
      base,
      limits: { memory: enabled.includes('memory'), pids: enabled.includes('pids') },
    };
  }
  const v1 = async (controller: string): Promise<string | undefined> => {
    const mount = all.find((m) => m.fstype === 'cgroup' && m.superOptions.includes(controller));
    const path = own.get(controller);
    if (!mount || path === undefined) return undefined;
    const parent = join(mount.point, path);
    try {
      const dir = join(parent, name);
      await cleanPredecessor(dir, logger);
      await mkdir(dir, { recursive: true });
      return dir;
    } catch (error) {
      logger.warn({ controller, err: (error as Error).message }, 'cannot use a cgroup v1 controller');
      return undefined;
    }
  };
  const memoryV1 = await v1('memory');
  const pidsV1 = await v1('pids');
  return {
    kind: 'hybrid',
    base,
    ...(memoryV1 ? { memoryV1 } : {}),
    ...(pidsV1 ? { pidsV1 } : {}),
    limits: { memory: Boolean(memoryV1), pids: Boolean(pidsV1) },
  };
}

/** Pure v2: makes `memory` and `pids` available below the worker's own cgroup (moving the worker to a leaf). */
async function enableV2Controllers(ownDir: string, isRoot: boolean, logger: Logger): Promise<void> {
  const available = (await readWords(join(ownDir, 'cgroup.controllers'))).filter(
    (c) => c === 'memory' || c === 'pids',
  );
  const enabled = await readWords(join(ownDir, 'cgroup.subtree_control'));
  const missing = available.filter((c) => !enabled.includes(c));
  if (missing.length === 0) return;
  if (!isRoot && (await readWords(join(ownDir, 'cgroup.procs'))).length > 0) {
    // "no internal processes": move the worker into a leaf of its own cgroup first
    const leaf = join(ownDir, `tcw-worker-${process.pid}`);
    await mkdir(leaf, { recursive: true });
    await writeFile(join(leaf, 'cgroup.procs'), String(process.pid));
    logger.info({ cgroup: leaf }, 'moved the worker into a leaf cgroup to enable controllers for tasks');
  }
  await writeFile(join(ownDir, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' ')).catch(
    (error: Error) =>
      logger.warn(
        { err: error.message, cgroup: ownDir },
        'cannot enable memory/pids controllers (other processes share the worker cgroup?): no task limits',
      ),
  );
}

let counter = 0;

/** Makes a task's cgroup folders and applies its limits. */
export async function createTaskCgroup(support: CgroupSupport, limits: TaskLimits): Promise<TaskCgroup> {
  const name = `task-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
  const main = join(support.base, name);
  const dirs = [main];
  await mkdir(main);
  const created = [main];
  try {
    if (support.kind === 'v2') {
      if (limits.memory !== undefined) {
        await writeFile(join(main, 'memory.max'), String(limits.memory));
        if (existsSync(join(main, 'memory.swap.max'))) await writeFile(join(main, 'memory.swap.max'), '0');
        await writeFile(join(main, 'memory.oom.group'), '1');
      }
      if (limits.pids !== undefined) await writeFile(join(main, 'pids.max'), String(limits.pids));
    } else {
      if (limits.memory !== undefined && support.memoryV1) {
        const dir = join(support.memoryV1, name);
        await mkdir(dir);
        created.push(dir);
        dirs.push(dir);
        await writeFile(join(dir, 'memory.limit_in_bytes'), String(limits.memory));
        if (existsSync(join(dir, 'memory.memsw.limit_in_bytes'))) {
          await writeFile(join(dir, 'memory.memsw.limit_in_bytes'), String(limits.memory)).catch(() => {});
        }
      }
      if (limits.pids !== undefined && support.pidsV1) {
        const dir = join(support.pidsV1, name);
        await mkdir(dir);
        created.push(dir);
        dirs.push(dir);
        await writeFile(join(dir, 'pids.max'), String(limits.pids));
      }
    }
  } catch (error) {
    for (const dir of created.reverse()) await rmdirRetry(dir).catch(() => {});
    throw error;
  }
  const memoryDir = support.kind === 'v2' ? main : dirs.find((d) => d.startsWith(support.memoryV1 ?? '\0'));
  return {
    dirs,
    async oomKilled() {
      if (!memoryDir || limits.memory === undefined) return false;
      const file = support.kind === 'v2' ? 'memory.events' : 'memory.oom_control';
      const text = await readFile(join(memoryDir, file), 'utf8').catch(() => '');
      const m = /^oom_kill (\d+)$/m.exec(text);
      return m !== null && Number(m[1]) > 0;
    },
    async remove() {
      for (const dir of [...created].reverse()) await destroyTree(dir);
    },
  };
}

/** Removes this worker's folders (at engine dispose). */
export async function teardownCgroups(support: CgroupSupport): Promise<void> {
  for (const dir of [support.base, support.memoryV1, support.pidsV1]) if (dir) await destroyTree(dir);
}
