/**
 * Process tree control: start a command so that every process it starts can be ended, including ones that called
 * `setsid` or double-forked. Used by the script and native engines.
 *
 * - `pid-namespace` (Linux, as root, with util-linux `unshare`): the command runs as PID 1 of a new PID namespace;
 *   when it exits or is killed, the kernel kills everything else in the namespace.
 * - `process-group` (everywhere else): the command leads a new process group; a child that calls `setsid` leaves
 *   the group and is not caught.
 * - `cgroup` (Linux, as root, when the caller passes `cgroups`): the command joins the given cgroups before it runs,
 *   so every process it starts is a member whatever it does (`setsid`, double fork); `kill()` writes `cgroup.kill`
 *   (cgroup v2) or SIGKILLs every member until none is left (v1).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { launchViaSpawner } from './spawner/client.js';

export type Isolation = 'pid-namespace' | 'process-group' | 'cgroup';

export interface SpawnTreeOptions {
  cwd: string;
  env: Record<string, string>;
  /** `pipe` gives a writable `stdin`; default `ignore`. */
  stdin?: 'pipe' | 'ignore';
  /** `auto` (default): a PID namespace where possible, else a process group; `cgroup` is used with `cgroups` (without them it means `auto`). */
  isolation?: 'auto' | Isolation;
  /** Run as this user (the worker must be root). */
  user?: { uid: number; gid: number; groups?: number[] };
  /**
   * Existing cgroup directories (made by the caller, e.g. `/sys/fs/cgroup/tcw/task-1`, plus cgroup v1 `memory` or
   * `pids` folders on a hybrid host) the command joins before it runs (Linux, root; needs `/bin/sh`). The first one
   * is the tree: `pids()` lists its `cgroup.procs`, `kill()` writes its `cgroup.kill` (v2) or SIGKILLs its members
   * (v1). Isolation is then `cgroup` unless `isolation` asks for a PID namespace too. With cgroups, `exited`
   * resolves when the command itself exits: the rest of the tree lives until `kill()` or `terminate()`, and
   * `terminate()` resolves once the cgroup is empty. The caller removes the directories.
   */
  cgroups?: readonly string[];
}

export interface TreeExit {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface TreeProcess {
  readonly pid: number;
  readonly isolation: Isolation;
  readonly stdin: Writable | null;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves when the command has exited (and, in a PID namespace, every process of the tree is gone). */
  readonly exited: Promise<TreeExit>;
  /** PIDs (as the worker sees them) of every live process of the tree. */
  pids(): Promise<number[]>;
  /** SIGTERM to every process of the tree, SIGKILL to all after `graceMs` (0: SIGKILL at once). */
  terminate(graceMs: number): Promise<TreeExit>;
  /** SIGKILL to every process of the tree, now. */
  kill(): void;
}

let namespaceSupport: boolean | undefined;

/** Whether PID namespaces can be used here (Linux, root, a working `unshare`). Checked once. */
export function pidNamespaceSupported(): boolean {
  if (namespaceSupport === undefined) {
    namespaceSupport = false;
    if (process.platform === 'linux' && process.getuid?.() === 0) {
      const probe = spawnSync('unshare', ['--pid', '--fork', '--kill-child', '--mount-proc', 'true'], {
        stdio: 'ignore',
        timeout: 5000,
      });
      namespaceSupport = probe.status === 0;
    }
  }
  return namespaceSupport;
}

async function readChildren(pid: number): Promise<number[]> {
  try {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
    return text.trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function allPids(): Promise<number[]> {
  return (await readdir('/proc')).filter((n) => /^\d+$/.test(n)).map(Number);
}

async function pidsInNamespace(nsLink: string): Promise<number[]> {
  const out: number[] = [];
  await Promise.all(
    (await allPids()).map(async (pid) => {
      try {
        if ((await readlink(`/proc/${pid}/ns/pid`)) === nsLink) out.push(pid);
      } catch {
        // gone, or not ours to read
      }
    }),
  );
  return out.sort((a, b) => a - b);
}

async function pidsInGroup(pgid: number): Promise<number[]> {
  const out: number[] = [];
  await Promise.all(
    (await allPids()).map(async (pid) => {
      try {
        const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        if (Number(fields[2]) === pgid && fields[0] !== 'Z') out.push(pid);
      } catch {
        // gone
      }
    }),
  );
  return out.sort((a, b) => a - b);
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

async function cgroupMembers(dir: string): Promise<number[]> {
  try {
    const text = await readFile(`${dir}/cgroup.procs`, 'utf8');
    return text.trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Joins the cgroups named before `--` (as root), then runs the rest; exit 125 when a cgroup cannot be joined. */
const JOIN_CGROUPS =
  'while [ "$1" != "--" ]; do echo 0 > "$1/cgroup.procs" || { echo "tcw: cannot join cgroup $1" >&2; exit 125; }; shift; done; shift; exec "$@"';

interface TreePlan {
  file: string;
  args: string[];
  isolation: Isolation;
  treeCgroup: string | undefined;
  /** set only when the command itself runs as the user (no wrapper to drop privileges) */
  uid?: number;
  gid?: number;
}

/** What to run to get `argv` isolated as asked: the command itself, or wrapped in unshare / sh (cgroups) / setpriv. */
function planTree(argv: readonly string[], options: SpawnTreeOptions): TreePlan {
  if (argv.length === 0) throw new TypeError('spawnTree needs a command');
  const wanted = options.isolation ?? 'auto';
  const cgroups = options.cgroups?.length ? [...options.cgroups] : undefined;
  const treeCgroup = cgroups?.[0];
  const isolation: Isolation = cgroups
    ? wanted === 'pid-namespace'
      ? 'pid-namespace'
      : 'cgroup'
    : wanted === 'auto' || wanted === 'cgroup'
      ? pidNamespaceSupported()
        ? 'pid-namespace'
        : 'process-group'
      : wanted;
  const drop = options.user
    ? [
        'setpriv',
        `--reuid=${options.user.uid}`,
        `--regid=${options.user.gid}`,
        options.user.groups?.length ? `--groups=${options.user.groups.join(',')}` : '--clear-groups',
        '--',
      ]
    : [];
  if (isolation === 'cgroup' || (cgroups && isolation === 'pid-namespace')) {
    const ns =
      isolation === 'pid-namespace'
        ? ['unshare', '--pid', '--fork', '--kill-child', '--mount-proc', '--']
        : [];
    const args = ['-c', JOIN_CGROUPS, 'tcw-cgroup', ...cgroups!, '--', ...ns, ...drop, ...argv];
    return { file: '/bin/sh', args, isolation, treeCgroup };
  }
  if (isolation === 'pid-namespace') {
    const args = ['--pid', '--fork', '--kill-child', '--mount-proc', '--', ...drop, ...argv];
    return { file: 'unshare', args, isolation, treeCgroup };
  }
  const plan: TreePlan = { file: argv[0]!, args: argv.slice(1), isolation, treeCgroup };
  if (options.user) {
    plan.uid = options.user.uid;
    plan.gid = options.user.gid;
  }
  return plan;
}

/** The started command, however it was started (directly, or by the spawner). */
interface Launched {
  /** -1 when it could not be started */
  readonly pid: number;
  readonly stdin: Writable | null;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** `{code: 127}` when it could not be started */
  readonly exited: Promise<TreeExit>;
  running(): boolean;
}

/** `child_process.spawn` in this process: forks the worker, which blocks its main thread until the child exec'd. */
function launchDirect(plan: TreePlan, options: SpawnTreeOptions): Launched {
  const child: ChildProcess = spawn(plan.file, plan.args, {
    cwd: options.cwd,
    env: options.env,
    detached: true,
    stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
    ...(plan.uid !== undefined ? { uid: plan.uid } : {}),
    ...(plan.gid !== undefined ? { gid: plan.gid } : {}),
  });
  const exited = new Promise<TreeExit>((resolve) => {
    child.once('error', () => resolve({ code: 127, signal: null }));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return {
    pid: child.pid ?? -1,
    stdin: child.stdin,
    stdout: child.stdout!,
    stderr: child.stderr!,
    exited,
    running: () => child.exitCode === null && child.signalCode === null,
  };
}

/** Whether `startTree` may use the spawner (`TCW_SPAWNER=0` turns it off). */
function spawnerWanted(): boolean {
  return process.env.TCW_SPAWNER !== '0';
}

/**
 * Starts `argv` (no shell) so that its whole process tree can be ended, with `child_process.spawn` in this process.
 * `startTree` does the same without forking this process.
 */
export function spawnTree(argv: readonly string[], options: SpawnTreeOptions): TreeProcess {
  const plan = planTree(argv, options);
  return treeOf(plan, launchDirect(plan, options));
}

/**
 * `spawnTree` through the spawner: a small helper process forks and execs the command, so that this (large) process
 * is not forked on its main thread for every task. The result behaves exactly as `spawnTree`'s once it resolves.
 * Falls back to `spawnTree`'s direct spawn when the spawner cannot be used, or with `TCW_SPAWNER=0`. Rejects where
 * `spawnTree` throws (no command, an invalid argument, a `spawn()` that throws).
 */
export async function startTree(argv: readonly string[], options: SpawnTreeOptions): Promise<TreeProcess> {
  const plan = planTree(argv, options);
  if (spawnerWanted()) {
    const launched = await launchViaSpawner({
      file: plan.file,
      args: plan.args,
      cwd: options.cwd,
      env: options.env,
      stdin: options.stdin === 'pipe',
      ...(plan.uid !== undefined ? { uid: plan.uid } : {}),
      ...(plan.gid !== undefined ? { gid: plan.gid } : {}),
    });
    if (launched) {
      const tree = treeOf(plan, launched);
      // the spawner died: nobody can tell when the tree exits, so end it now
      launched.onLost(() => tree.kill());
      return tree;
    }
  }
  return treeOf(plan, launchDirect(plan, options));
}

/** The tree control (pids, terminate, kill) around a started command. */
function treeOf(plan: TreePlan, child: Launched): TreeProcess {
  const { isolation, treeCgroup } = plan;
  const pid = child.pid;
  let nsLink: Promise<string | undefined> | undefined;
  const namespaceOf = () => {
    nsLink ??= (async () => {
      for (let i = 0; i < 50; i++) {
        const [inner] = await readChildren(pid);
        if (inner !== undefined) {
          try {
            return await readlink(`/proc/${inner}/ns/pid`);
          } catch {
            return undefined;
          }
        }
        if (!child.running()) return undefined;
        await new Promise((r) => setTimeout(r, 10));
      }
      return undefined;
    })();
    return nsLink;
  };
  // Looked up only when pids() is asked for (terminate, kill, tests), not for every command: once the wrapper has
  // exited, the namespace is gone with it (its init died, --kill-child), so nothing can be missed by waiting.

  let ended = false;
  /** The cgroup is empty and the command itself has exited (it may not have joined the cgroup yet). */
  const cgroupEmpty = async (waitMs: number): Promise<boolean> => {
    const end = Date.now() + waitMs;
    for (;;) {
      if (ended && (await cgroupMembers(treeCgroup!)).length === 0) return true;
      if (Date.now() >= end) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  const exited = child.exited.then((exit) => {
    ended = true;
    return exit;
  });

  const pids = async (): Promise<number[]> => {
    if (treeCgroup) return (await cgroupMembers(treeCgroup)).sort((a, b) => a - b);
    if (isolation === 'process-group') return pid > 0 ? pidsInGroup(pid) : [];
    const link = await namespaceOf();
    const inNs = link ? await pidsInNamespace(link) : [];
    const wrapperAlive = child.running() && pid > 0;
    return wrapperAlive ? [pid, ...inNs.filter((p) => p !== pid)] : inNs;
  };

  const kill = () => {
    if (treeCgroup) {
      if (existsSync(`${treeCgroup}/cgroup.kill`)) {
        try {
          writeFileSync(`${treeCgroup}/cgroup.kill`, '1');
        } catch {
          // the cgroup is gone
        }
      } else {
        void cgroupMembers(treeCgroup).then((list) => signalAll(list, 'SIGKILL'));
      }
      if (pid > 0) signalAll([pid], 'SIGKILL');
      return;
    }
    if (pid <= 0) return;
    if (isolation === 'process-group') {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // group gone
      }
      return;
    }
    // Killing the unshare wrapper makes the kernel end the namespace (--kill-child); kill the members too.
    void pids().then((list) => signalAll(list, 'SIGKILL'));
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  };

  const terminateCgroup = async (graceMs: number): Promise<TreeExit> => {
    if (graceMs > 0) {
      // the command itself too: it may still be joining the cgroup
      signalAll([...(await cgroupMembers(treeCgroup!)), ...(ended ? [] : [pid])], 'SIGTERM');
      if (await cgroupEmpty(graceMs)) return exited;
    }
    // v1 has no cgroup.kill: members forking while they are signalled need more rounds
    for (let round = 0; round < 100 && !(await cgroupEmpty(round === 0 ? 0 : 50)); round++) kill();
    return exited;
  };

  const terminate = async (graceMs: number): Promise<TreeExit> => {
    if (treeCgroup) return terminateCgroup(graceMs);
    if (graceMs > 0 && child.running()) {
      if (isolation === 'process-group') {
        try {
          process.kill(-pid, 'SIGTERM');
        } catch {
          // gone
        }
      } else {
        const members = (await pids()).filter((p) => p !== pid);
        signalAll(members, 'SIGTERM');
      }
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
      if ((await Promise.race([exited, timer])) !== 'timeout' && isolation === 'pid-namespace') return exited;
    }
    kill();
    const result = await exited;
    if (isolation === 'process-group') kill();
    return result;
  };

  return {
    pid,
    isolation,
    stdin: child.stdin,
    stdout: child.stdout,
    stderr: child.stderr,
    exited,
    pids,
    terminate,
    kill,
  };
}
