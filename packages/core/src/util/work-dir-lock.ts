import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Work folders locked by this process (the pid file alone cannot tell two workers of one process apart). */
const held = new Set<string>();

/** Whether `pid` is a live process that may be a worker (a Node process, where /proc can tell). */
function workerAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // a pid reused by something else since that worker died does not hold the folder
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /node|tcw/.test(cmdline);
  } catch {
    return true; // no /proc here: assume it is one
  }
}

/**
 * One worker per work folder: `<workDir>/worker.pid` names the process using it, from `Worker.start()` until the
 * worker's loop has ended (or the process exits). Two workers on one folder would remove each other's task folders
 * (engines clean up, at start, what a crashed worker left there). A pid file whose process is gone is taken over.
 * Returns the release function. Throws when another live worker holds the folder.
 */
export function lockWorkDir(workDir: string): () => void {
  const dir = resolve(workDir);
  const file = join(dir, 'worker.pid');
  if (held.has(dir)) {
    throw new Error(
      `work folder ${dir} is in use by another worker of this process; give each worker its own`,
    );
  }
  mkdirSync(dir, { recursive: true });
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw error;
    }
    let pid = Number.NaN;
    try {
      pid = Number(readFileSync(file, 'utf8').trim());
    } catch {
      continue; // removed meanwhile: try again
    }
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && workerAlive(pid)) {
      throw new Error(
        `work folder ${dir} is in use by another worker (pid ${pid}, see ${file}); stop it, or give this ` +
          'worker its own work folder (worker.workDir). If that process is not a tcw worker, remove the file',
      );
    }
    // left by a worker that is gone (or by this process, before): take it over
    try {
      unlinkSync(file);
    } catch {
      // someone else took it over first: the next attempt sees their pid
    }
  }
  held.add(dir);
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    held.delete(dir);
    process.off('exit', release);
    try {
      if (readFileSync(file, 'utf8').trim() === String(process.pid)) unlinkSync(file);
    } catch {
      // already gone
    }
  };
  process.on('exit', release);
  return release;
}
