/**
 * Process tree control: start a command so that every process it starts can be ended, including ones that called
 * `setsid` or double-forked. Used by the script and native engines.
 *
 * - `pid-namespace` (Linux, as root, with util-linux `unshare`): the command runs as PID 1 of a new PID namespace;
 *   when it exits or is killed, the kernel kills everything else in the namespace.
 * - `process-group` (everywhere else): the command leads a new process group; a child that calls `setsid` leaves
 *   the group and is not caught.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readdir, readFile, readlink } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';

export type Isolation = 'pid-namespace' | 'process-group';

export interface SpawnTreeOptions {
  cwd: string;
  env: Record<string, string>;
  /** `pipe` gives a writable `stdin`; default `ignore`. */
  stdin?: 'pipe' | 'ignore';
  /** `auto` (default): a PID namespace where possible, else a process group. */
  isolation?: 'auto' | Isolation;
  /** Run as this user (the worker must be root). */
  user?: { uid: number; gid: number; groups?: number[] };
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

/** Starts `argv` (no shell) so that its whole process tree can be ended. */
export function spawnTree(argv: readonly string[], options: SpawnTreeOptions): TreeProcess {
  if (argv.length === 0) throw new TypeError('spawnTree needs a command');
  const wanted = options.isolation ?? 'auto';
  const isolation: Isolation =
    wanted === 'auto' ? (pidNamespaceSupported() ? 'pid-namespace' : 'process-group') : wanted;
  let file: string;
  let args: string[];
  const spawnUser: { uid?: number; gid?: number } = {};
  if (isolation === 'pid-namespace') {
    const drop = options.user
      ? [
          'setpriv',
          `--reuid=${options.user.uid}`,
          `--regid=${options.user.gid}`,
          options.user.groups?.length ? `--groups=${options.user.groups.join(',')}` : '--clear-groups',
          '--',
        ]
      : [];
    file = 'unshare';
    args = ['--pid', '--fork', '--kill-child', '--mount-proc', '--', ...drop, ...argv];
  } else {
    file = argv[0]!;
    args = argv.slice(1);
    if (options.user) {
      spawnUser.uid = options.user.uid;
      spawnUser.gid = options.user.gid;
    }
  }
  const child: ChildProcess = spawn(file, args, {
    cwd: options.cwd,
    env: options.env,
    detached: true,
    stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
    ...spawnUser,
  });
  const pid = child.pid ?? -1;
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
        if (child.exitCode !== null || child.signalCode !== null) return undefined;
        await new Promise((r) => setTimeout(r, 10));
      }
      return undefined;
    })();
    return nsLink;
  };
  if (isolation === 'pid-namespace') void namespaceOf();

  const exited = new Promise<TreeExit>((resolve) => {
    child.once('error', () => resolve({ code: 127, signal: null }));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });

  const pids = async (): Promise<number[]> => {
    if (isolation === 'process-group') return pid > 0 ? pidsInGroup(pid) : [];
    const link = await namespaceOf();
    const inNs = link ? await pidsInNamespace(link) : [];
    const wrapperAlive = child.exitCode === null && child.signalCode === null && pid > 0;
    return wrapperAlive ? [pid, ...inNs.filter((p) => p !== pid)] : inNs;
  };

  const kill = () => {
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

  const terminate = async (graceMs: number): Promise<TreeExit> => {
    if (graceMs > 0 && child.exitCode === null && child.signalCode === null) {
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
    stdout: child.stdout!,
    stderr: child.stderr!,
    exited,
    pids,
    terminate,
    kill,
  };
}
