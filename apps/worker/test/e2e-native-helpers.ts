// Helpers of the native-engine end-to-end tests: the process table and /etc/passwd, read from /proc and /etc.
import { readdir, readFile } from 'node:fs/promises';

/**
 * PIDs of live processes (zombies excluded: PID 1 here reaps orphans slowly) whose command line or environment
 * contains `marker`.
 */
export async function processesMarked(marker: string): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
      const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8');
      const env = await readFile(`/proc/${name}/environ`, 'utf8').catch(() => '');
      if (cmd.includes(marker) || env.includes(marker)) found.push(Number(name));
    } catch {
      // gone
    }
  }
  return found;
}

/** The /etc/passwd entry of `name`, if there is one. */
export async function passwdEntry(
  name: string,
): Promise<{ name: string; uid: number; gid: number; home: string } | undefined> {
  for (const line of (await readFile('/etc/passwd', 'utf8')).split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name) {
      return { name, uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5]! };
    }
  }
  return undefined;
}

/** A unique marker, carried by a task's processes in their environment. */
export function uniqueMarker(): string {
  return `tcw-e2e-mark-${Math.random().toString(36).slice(2, 10)}`;
}

/**
 * A shell script that leaves a `setsid` grandchild and a double-forked daemon behind (both inherit the task's
 * environment, so they carry its marker), then says so (in the log, and with `escapees.ready` in its directory).
 */
export const ESCAPE_SCRIPT = [
  'setsid sleep 3600 &',
  "(setsid sh -c 'sleep 3600 & exec sleep 3600' &)",
  'sleep 0.2',
  'echo "escapees-started task-uid=$(id -u) task-user=$(id -un)"',
  'touch escapees.ready',
].join('\n');

/** Live (non-zombie) processes whose real or effective uid is `uid`. */
export async function processesOfUid(uid: number): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = await readFile(`/proc/${name}/status`, 'utf8');
      const ids = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
      const state = /^State:\s+(\S)/m.exec(status)?.[1];
      if (ids && state !== 'Z' && state !== 'X' && (Number(ids[1]) === uid || Number(ids[2]) === uid))
        found.push(Number(name));
    } catch {
      // gone
    }
  }
  return found;
}

/** Parent pid, session id and uid of a process (from /proc), or undefined when it is gone. */
export async function processInfo(
  pid: number,
): Promise<{ ppid: number; session: number; uid: number } | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // after "pid (comm) ": state ppid pgrp session …
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    return {
      ppid: Number(fields[1]),
      session: Number(fields[3]),
      uid: Number(/^Uid:\s+(\d+)/m.exec(status)![1]),
    };
  } catch {
    return undefined;
  }
}

/** Whether `name` is in /etc/passwd or /etc/group (userdel writes them one after the other). */
export async function userOrGroupExists(name: string): Promise<boolean> {
  for (const file of ['/etc/passwd', '/etc/group']) {
    if ((await readFile(file, 'utf8')).split('\n').some((l) => l.startsWith(`${name}:`))) return true;
  }
  return false;
}
