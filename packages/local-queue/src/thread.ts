import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { InProcessClient, InProcessCredentials, LocalQueue, LocalQueueOptions } from './local-queue.js';
import type { FaultSpec } from './server.js';
import { fromErrorShape, type ParentMessage, type ThreadMessage } from './thread-protocol.js';

/** The built thread entry: next to this file in dist; from src (tests run the sources), the built one. */
function threadEntry(): string {
  for (const candidate of ['./thread-main.js', '../dist/thread-main.js']) {
    const path = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw new Error('@tcw/local-queue: dist/thread-main.js is missing (build the package)');
}

/**
 * Starts the local queue on its own worker thread: the same queue, API and state as `startLocalQueue`, but its
 * SQLite commits (and their fsyncs), Hawk checks and HTTP serving run on another core than the caller's event
 * loop. `client()` calls cross the thread boundary as messages (no HTTP); `events` are forwarded for the names
 * that have listeners; the logger stays in the calling thread. `injectFaults`/`clearFaults` take effect
 * asynchronously (before any later `client()` call, not necessarily before a later HTTP request).
 *
 * If the thread dies, pending and later calls reject and `events` emits `fatal` with the error.
 */
export async function startLocalQueueThread(options: LocalQueueOptions): Promise<LocalQueue> {
  const { logger, ...rest } = options;
  const worker = new Worker(threadEntry(), { workerData: { options: rest } });
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let closing = false;
  let dead: Error | undefined;

  const send = (message: ParentMessage) => worker.postMessage(message);
  const request = (message: ParentMessage & { id: number }) =>
    new Promise<unknown>((resolve, reject) => {
      if (dead) return reject(dead);
      pending.set(message.id, { resolve, reject });
      send(message);
    });

  const ready = new Promise<Extract<ThreadMessage, { type: 'ready' }>>((resolve, reject) => {
    worker.on('message', (m: ThreadMessage) => {
      switch (m.type) {
        case 'ready':
          resolve(m);
          return;
        case 'failed':
          reject(fromErrorShape(m.error));
          return;
        case 'reply': {
          const p = pending.get(m.id);
          if (!p) return;
          pending.delete(m.id);
          if (m.error) p.reject(fromErrorShape(m.error));
          else p.resolve(m.value);
          return;
        }
        case 'event':
          events.emit(m.name, m.payload);
          return;
        case 'log':
          logger?.[m.level](...m.args);
          return;
      }
    });
    worker.on('error', (error) => {
      reject(error);
      dead ??= new Error(`the local queue thread failed: ${error.message}`, { cause: error });
    });
    worker.on('exit', (code) => {
      const error =
        dead ?? new Error(`the local queue thread exited${closing ? '' : ` unexpectedly (code ${code})`}`);
      dead = error;
      reject(error);
      for (const p of pending.values()) p.reject(error);
      pending.clear();
      if (!closing) events.emit('fatal', error);
    });
  });

  const started = await ready;
  events.on('newListener', (name: string | symbol) => {
    if (typeof name === 'string' && name !== 'newListener' && name !== 'fatal')
      send({ type: 'subscribe', name });
  });

  const client = (
    service: Parameters<LocalQueue['client']>[0],
    credentials?: InProcessCredentials,
    opts: { retries?: number } = {},
  ): InProcessClient => {
    if (closing) throw new Error('the local queue is closed');
    const out: InProcessClient = {};
    const creds = credentials
      ? {
          clientId: credentials.clientId,
          accessToken: credentials.accessToken,
          ...(credentials.certificate !== undefined ? { certificate: credentials.certificate } : {}),
        }
      : undefined;
    for (const method of started.methods[service] ?? []) {
      out[method] = (...args: unknown[]) =>
        request({
          type: 'call',
          id: nextId++,
          service,
          credentials: creds,
          retries: opts.retries,
          method,
          // what would be JSON over HTTP: plain data (undefined fields and functions dropped)
          args: args.map((a) => (a === undefined ? undefined : JSON.parse(JSON.stringify(a)))),
        });
    }
    return out;
  };

  return {
    rootUrl: started.rootUrl,
    rootCredentials: started.rootCredentials,
    events,
    client,
    injectFaults(spec: FaultSpec | FaultSpec[]): void {
      void request({ type: 'faults', id: nextId++, spec }).catch(() => {});
    },
    clearFaults(): void {
      void request({ type: 'clearFaults', id: nextId++ }).catch(() => {});
    },
    createTasks: async (n, template) =>
      (await request({ type: 'createTasks', id: nextId++, n, template })) as string[],
    close: async () => {
      if (closing) return;
      closing = true;
      if (!dead) await request({ type: 'close', id: nextId++ }).catch(() => {});
      await worker.terminate();
    },
  };
}
