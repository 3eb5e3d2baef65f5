import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import taskcluster from 'taskcluster-client';
import {
  type LocalQueue,
  type LocalQueueConfig,
  startLocalQueue,
  startLocalQueueThread,
} from '../src/index.js';

export { taskcluster };

export const WORKER = {
  clientId: 'project/tcw/worker',
  accessToken: 'worker-token-0123456789abcdefghijklmnopqrstuvw',
  scopes: ['queue:claim-work:local-test/*', 'queue:worker-id:test-group/*'],
};
export const LIMITED = {
  clientId: 'project/tcw/limited',
  accessToken: 'limited-token-0123456789abcdefghijklmnopqrstuv',
  scopes: ['queue:create-task:lowest:local-test/*', 'queue:scheduler-id:-'],
};

export interface Harness {
  queue: LocalQueue;
  stateDir: string;
  root: InstanceType<typeof taskcluster.Queue>;
  worker: InstanceType<typeof taskcluster.Queue>;
  client(
    kind: 'Queue' | 'Object' | 'Auth' | 'Secrets' | 'WorkerManager',
    credentials?: object,
    extra?: object,
  ): any;
  close(): Promise<void>;
}

export async function startHarness(
  config: LocalQueueConfig = {},
  stateDir?: string,
  options: { thread?: boolean } = {},
): Promise<Harness> {
  const dir = stateDir ?? mkdtempSync(join(tmpdir(), 'local-queue-test-'));
  const queue = await (options.thread ? startLocalQueueThread : startLocalQueue)({
    stateDir: dir,
    config: { claimWorkTimeout: 1, ...config, clients: [WORKER, LIMITED, ...(config.clients ?? [])] },
  });
  const client = (kind: string, credentials?: object, extra: object = {}) =>
    new (taskcluster as any)[kind]({
      rootUrl: queue.rootUrl,
      credentials: credentials ?? queue.rootCredentials,
      retries: 1,
      delayFactor: 10,
      ...extra,
    });
  return {
    queue,
    stateDir: dir,
    root: client('Queue'),
    worker: client('Queue', WORKER),
    client,
    async close() {
      await queue.close();
      if (!stateDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function taskDef(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    taskQueueId: 'local-test/flow',
    created: taskcluster.fromNowJSON('0 seconds'),
    deadline: taskcluster.fromNowJSON('1 hour'),
    payload: { command: ['true'] },
    metadata: {
      name: 'local-queue test',
      description: 'a task from the local-queue tests',
      owner: 'tests@example.com',
      source: 'https://example.com/tcw',
    },
    ...overrides,
  };
}

/** A Writable that collects what it receives. */
export function sink(): { stream: Writable; bytes(): Buffer } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      cb();
    },
  });
  return { stream, bytes: () => Buffer.concat(chunks) };
}

/** Expects the promise to reject with a taskcluster-client error of this status; returns the error. */
export async function expectStatus(p: Promise<unknown>, statusCode: number): Promise<any> {
  try {
    await p;
  } catch (err) {
    const e = err as { statusCode?: number; code?: string; message?: string };
    if (e.statusCode !== statusCode) {
      throw new Error(`expected HTTP ${statusCode}, got ${e.statusCode} ${e.code}: ${e.message}`);
    }
    return err;
  }
  throw new Error(`expected HTTP ${statusCode}, but the call succeeded`);
}

export async function claimOne(h: Harness, taskQueueId = 'local-test/flow', workerId = 'w1'): Promise<any> {
  const res = await h.worker.claimWork(taskQueueId, { workerGroup: 'test-group', workerId, tasks: 1 });
  if (res.tasks.length !== 1) throw new Error(`expected one claim, got ${res.tasks.length}`);
  return res.tasks[0];
}

/** Resolves with the first event `name` whose payload matches `predicate`. */
export function nextEvent(
  h: Harness,
  name: string,
  predicate: (m: any) => boolean = () => true,
): Promise<any> {
  return new Promise((resolve) => {
    const listener = (m: any) => {
      if (predicate(m)) {
        h.queue.events.off(name, listener);
        resolve(m);
      }
    };
    h.queue.events.on(name, listener);
  });
}
