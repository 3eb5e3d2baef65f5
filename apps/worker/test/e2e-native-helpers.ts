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
 * environment, so they carry its marker), then says so.
 */
export const ESCAPE_SCRIPT = [
  'setsid sleep 3600 &',
  "(setsid sh -c 'sleep 3600 & exec sleep 3600' &)",
  'sleep 0.2',
  'echo escapees-started',
].join('\n');
