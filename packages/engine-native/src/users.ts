/** OS users for tasks: look-ups, and per-task users made with `useradd` and removed with `userdel -r` (Linux). */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, readdir, readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { removeTree } from '@tcw/core';

const run = promisify(execFile);

export interface TaskUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** The worker's own user. */
export function currentUser(): TaskUser {
  const info = userInfo();
  return { name: info.username, uid: info.uid, gid: info.gid, home: info.homedir };
}

/** An existing user by name (from the passwd database through `getent`). */
export async function lookupUser(name: string): Promise<TaskUser | undefined> {
  try {
    const { stdout } = await run('getent', ['passwd', name]);
    const [user, , uid, gid, , home] = stdout.trim().split(':');
    if (!user || uid === undefined || gid === undefined) return undefined;
    return { name: user, uid: Number(uid), gid: Number(gid), home: home ?? '/' };
  } catch {
    return undefined;
  }
}

/** Names of per-task users: `tcw-task-` and 8 hex digits (within the 32-character limit of useradd). */
export const TASK_USER_PREFIX = 'tcw-task-';

export function newTaskUserName(): string {
  return `${TASK_USER_PREFIX}${randomBytes(4).toString('hex')}`;
}

/** Creates a user and its group, with `home` as its home directory (made by useradd, mode 0700). */
export async function createTaskUser(name: string, home: string): Promise<TaskUser> {
  await run('useradd', ['--create-home', '--home-dir', home, '--user-group', '--shell', '/bin/sh', name]);
  await chmod(home, 0o700);
  const user = await lookupUser(name);
  if (!user) throw new Error(`useradd made ${name} but getent cannot find it`);
  return user;
}

/** Kills every process of a user (a last resort where no cgroup holds the task). Returns how many were signalled. */
export async function killUserProcesses(uid: number): Promise<number> {
  let killed = 0;
  for (let round = 0; round < 20; round++) {
    const pids: number[] = [];
    const names = (await readdir('/proc')).filter((name) => /^\d+$/.test(name));
    await Promise.all(
      names.map(async (name) => {
        try {
          const status = await readFile(`/proc/${name}/status`, 'utf8');
          const m = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
          const state = /^State:\s+(\S)/m.exec(status)?.[1];
          if (m && (Number(m[1]) === uid || Number(m[2]) === uid) && state !== 'Z') pids.push(Number(name));
        } catch {
          // gone
        }
      }),
    );
    if (pids.length === 0) return killed;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {
        // gone
      }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return killed;
}

/** Shared folders where any user may create files: what a per-task user leaves there outlives `userdel -r`. */
export const SHARED_TEMP_DIRS = ['/tmp', '/var/tmp', '/dev/shm', '/run/lock'];

/**
 * Removes what user `uid` left in the shared temporary folders: every entry it owns, with what is inside, and, in
 * world-writable folders of others (`/tmp/.X11-unix`, say), whatever it put there. A user can create entries only
 * in folders it may write to, so other users' files are never looked into further. Symlinks are removed, never
 * followed; other file systems mounted below are not entered; `keep` (absolute paths, e.g. writable volumes the
 * task was given) stay with what is in them. Returns the paths removed.
 */
export async function removeUserFiles(
  uid: number,
  dirs: readonly string[] = SHARED_TEMP_DIRS,
  keep: readonly string[] = [],
): Promise<string[]> {
  const removed: string[] = [];
  const scan = async (dir: string, device: number, depth: number): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return; // gone, or not there on this system
    }
    const visit = async (name: string) => {
      const path = join(dir, name);
      const info = await lstat(path).catch(() => undefined);
      if (!info || info.dev !== device || keep.includes(path)) return;
      // a kept folder (a writable volume: its files are the user's on purpose) and the folders above it stay
      if (keep.some((k) => k.startsWith(`${path}/`))) {
        if (info.isDirectory() && depth < 8) await scan(path, device, depth + 1);
        return;
      }
      if (info.uid === uid) {
        await removeTree(path).then(
          () => removed.push(path),
          () => {},
        );
      } else if (info.isDirectory() && info.mode & 0o002 && depth < 8) {
        await scan(path, device, depth + 1);
      }
    };
    // a busy /tmp holds thousands of entries: look at them 64 at a time
    for (let i = 0; i < names.length; i += 64) await Promise.all(names.slice(i, i + 64).map(visit));
  };
  for (const dir of dirs) {
    const info = await lstat(dir).catch(() => undefined);
    if (info?.isDirectory()) await scan(dir, info.dev, 0);
  }
  return removed;
}

/** Removes a user, its group and its home directory (`userdel -r`); `keepHome` keeps the directory. */
export async function deleteTaskUser(name: string, keepHome = false): Promise<void> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await run('userdel', keepHome ? [name] : ['--remove', name]);
      return;
    } catch (error) {
      const stderr = String((error as { stderr?: string }).stderr ?? '');
      // 6: the user does not exist; 12: home not removed (already gone) — both fine
      const code = (error as { code?: number }).code;
      if (code === 6 || (code === 12 && /not found|No such file/i.test(stderr))) return;
      lastError = error;
      // 8: still logged in (a process not yet reaped)
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw lastError;
}
