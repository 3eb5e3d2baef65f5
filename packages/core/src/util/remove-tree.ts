import * as fs from 'node:fs';
import { Worker } from 'node:worker_threads';

/** The synchronous calls `removeAllSync` makes (passed in, so the function can also run on the helper thread). */
export type RemoveFs = Pick<
  typeof fs,
  'lstatSync' | 'readdirSync' | 'unlinkSync' | 'rmdirSync' | 'chmodSync'
>;

/**
 * `rm -rf path`, synchronously, never following a symlink (a link is removed, not what it points to); a missing
 * path is fine. Unlike `fs.rmSync` (which first tries `rmdir` on every folder, fails, and builds an error with a
 * stack trace each time, then `lstat`s every entry), it reads each folder once with its entry types and removes
 * files and folders directly. A folder the task made read-only or unreadable (`chmod -w`, Go's module cache) is
 * made accessible to its owner first; as root that is never needed. A folder that gained an entry meanwhile is
 * walked again (3 times at most).
 *
 * Self-contained (only `fsOps` and the arguments): its source also runs on the helper thread.
 */
export function removeAllSync(fsOps: RemoveFs, path: string): void {
  const code = (error: unknown) => (error as { code?: string }).code;
  /** Runs `op`; on EACCES/EPERM gives the owner rwx on `folder` (and on nothing else) and runs it once more. */
  const withAccess = <T>(folder: string, op: () => T): T => {
    try {
      return op();
    } catch (error) {
      if (code(error) !== 'EACCES' && code(error) !== 'EPERM') throw error;
      fsOps.chmodSync(folder, 0o700);
      return op();
    }
  };
  const parentOf = (p: string) => {
    const slash = p.lastIndexOf('/');
    return slash > 0 ? p.slice(0, slash) : slash === 0 ? '/' : '.';
  };
  const removeFolder = (dir: string): void => {
    for (let attempt = 0; ; attempt++) {
      const entries = withAccess(dir, () => fsOps.readdirSync(dir, { withFileTypes: true }));
      for (const entry of entries) {
        const child = `${dir}/${entry.name}`;
        try {
          if (entry.isDirectory()) removeFolder(child);
          else withAccess(dir, () => fsOps.unlinkSync(child));
        } catch (error) {
          if (code(error) !== 'ENOENT') throw error;
        }
      }
      try {
        withAccess(parentOf(dir), () => fsOps.rmdirSync(dir));
        return;
      } catch (error) {
        if (code(error) === 'ENOENT') return;
        if (code(error) !== 'ENOTEMPTY' || attempt >= 2) throw error;
      }
    }
  };
  let stat: fs.Stats;
  try {
    stat = fsOps.lstatSync(path);
  } catch (error) {
    if (code(error) === 'ENOENT') return;
    throw error;
  }
  if (stat.isDirectory()) removeFolder(path.length > 1 ? path.replace(/\/+$/, '') : path);
  else
    try {
      withAccess(parentOf(path), () => fsOps.unlinkSync(path));
    } catch (error) {
      if (code(error) !== 'ENOENT') throw error;
    }
}

// `fs.promises.rm(dir, {recursive})` walks the tree with one asynchronous call per entry, each dispatched and
// completed on the event loop: for the small folders of short tasks that is a few ms of the worker's main thread per
// task. `removeAllSync` does the walk with plain system calls, so it runs on a worker thread of its own: the event
// loop only posts a message, and a huge tree never blocks it.
const REMOVER = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const removeAllSync = ${removeAllSync.toString()};
parentPort.on('message', ({ id, path }) => {
  try {
    removeAllSync(fs, path);
    parentPort.postMessage({ id });
  } catch (error) {
    parentPort.postMessage({ id, error: { message: error.message, code: error.code } });
  }
});
`;

interface Pending {
  resolve: () => void;
  reject: (error: Error) => void;
}

let remover: Worker | undefined;
let broken = false;
let nextId = 1;
const pending = new Map<number, Pending>();

function start(): Worker | undefined {
  if (remover || broken) return remover;
  try {
    const worker = new Worker(REMOVER, { eval: true });
    worker.unref();
    worker.on('message', (m: { id: number; error?: { message: string; code?: string } }) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      // idle: let the process exit without waiting for this thread
      if (pending.size === 0) worker.unref();
      if (m.error) p.reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
      else p.resolve();
    });
    const fail = (error: Error) => {
      remover = undefined;
      broken = true;
      for (const p of pending.values()) p.reject(error);
      pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (remover === worker) fail(new Error(`the remover thread exited (code ${code})`));
    });
    remover = worker;
  } catch {
    broken = true;
  }
  return remover;
}

/**
 * Removes a file or a folder with everything in it (like `rm -rf`, see `removeAllSync`; a missing path is fine), on
 * a helper thread so the event loop pays one message whatever the tree's size. Falls back to `removeAllSync` on the
 * calling thread if the helper thread cannot run.
 */
export async function removeTree(path: string): Promise<void> {
  const worker = start();
  if (!worker) return removeAllSync(fs, path);
  try {
    await new Promise<void>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      // a removal in flight keeps the process alive, like the fs call it replaces
      worker.ref();
      worker.postMessage({ id, path });
    });
  } catch (error) {
    if (broken) return removeAllSync(fs, path);
    throw error;
  }
}
