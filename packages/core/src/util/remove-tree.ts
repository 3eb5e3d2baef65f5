import { rm } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';

// `fs.promises.rm(dir, {recursive})` walks the tree with one asynchronous call per entry (lstat, readdir, unlink,
// rmdir), each dispatched and completed on the event loop: for the small folders of short tasks that is a few ms
// of the worker's main thread per task. `rmSync` does the same walk with plain system calls, so it runs on a
// worker thread of its own: the event loop only posts a message, and a huge tree never blocks it.
const REMOVER = `
const { parentPort } = require('node:worker_threads');
const { rmSync } = require('node:fs');
parentPort.on('message', ({ id, path }) => {
  try {
    rmSync(path, { recursive: true, force: true, maxRetries: 3 });
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
 * Removes a file or a folder with everything in it (like `rm -rf`; a missing path is fine), on a helper thread so
 * the event loop pays one message whatever the tree's size. Falls back to `fs.promises.rm` if the thread cannot
 * run.
 */
export async function removeTree(path: string): Promise<void> {
  const worker = start();
  if (!worker) return rm(path, { recursive: true, force: true, maxRetries: 3 });
  try {
    await new Promise<void>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      // a removal in flight keeps the process alive, like the fs call it replaces
      worker.ref();
      worker.postMessage({ id, path });
    });
  } catch (error) {
    if (broken) return rm(path, { recursive: true, force: true, maxRetries: 3 });
    throw error;
  }
}
