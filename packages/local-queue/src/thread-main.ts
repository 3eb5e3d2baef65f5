// The entry of the local queue's worker thread (see thread.ts): runs startLocalQueue here and answers the
// parent's messages. Built to dist/thread-main.js next to dist/index.js.
import { parentPort, workerData } from 'node:worker_threads';
import { type InProcessClient, type LocalQueue, startLocalQueue } from './local-queue.js';
import type { ParentMessage, ThreadMessage } from './thread-protocol.js';
import { cloneable, errorShape, jsonSafe } from './thread-protocol.js';
import { suppressSqliteExperimentalWarning } from './warnings.js';

const port = parentPort;
if (!port) throw new Error('thread-main.js runs as a worker thread of startLocalQueueThread');
const post = (m: ThreadMessage) => {
  try {
    port.postMessage(m);
  } catch {
    port.postMessage(jsonSafe(m));
  }
};

const log =
  (level: 'info' | 'warn' | 'error' | 'debug') =>
  (...args: unknown[]) =>
    post({ type: 'log', level, args: args.map(cloneable) });
const logger = { info: log('info'), warn: log('warn'), error: log('error'), debug: log('debug') };

suppressSqliteExperimentalWarning();
let queue: LocalQueue;
try {
  queue = await startLocalQueue({ ...workerData.options, logger });
} catch (error) {
  post({ type: 'failed', error: errorShape(error) });
  port.close();
  process.exit(1);
}

/** Clients by service and credentials (the worker uses a few: its own, and each running task's). */
const clients = new Map<string, InProcessClient>();
function clientFor(m: Extract<ParentMessage, { type: 'call' }>): InProcessClient {
  const c = m.credentials;
  const key = `${m.service}\n${m.retries ?? ''}\n${c ? `${c.clientId}\n${c.accessToken}\n${JSON.stringify(c.certificate ?? '')}` : ''}`;
  let client = clients.get(key);
  if (client) {
    clients.delete(key);
  } else {
    client = queue.client(m.service, c, m.retries === undefined ? {} : { retries: m.retries });
    if (clients.size >= 128) clients.delete(clients.keys().next().value as string);
  }
  clients.set(key, client);
  return client;
}

const subscribed = new Set<string>();
const methods: Record<string, string[]> = {};
for (const service of ['queue', 'object', 'auth', 'secrets', 'worker-manager'] as const) {
  methods[service] = Object.keys(queue.client(service));
}

port.on('message', async (m: ParentMessage) => {
  switch (m.type) {
    case 'call': {
      try {
        const fn = clientFor(m)[m.method];
        if (!fn) throw new TypeError(`${m.service}.${m.method} is not an API method`);
        post({ type: 'reply', id: m.id, value: await fn(...m.args) });
      } catch (error) {
        post({ type: 'reply', id: m.id, error: errorShape(error) });
      }
      return;
    }
    case 'subscribe':
      if (subscribed.has(m.name)) return;
      subscribed.add(m.name);
      queue.events.on(m.name, (payload: unknown) =>
        post({ type: 'event', name: m.name, payload: cloneable(payload) }),
      );
      return;
    case 'faults':
      try {
        queue.injectFaults(m.spec);
        post({ type: 'reply', id: m.id, value: undefined });
      } catch (error) {
        post({ type: 'reply', id: m.id, error: errorShape(error) });
      }
      return;
    case 'clearFaults':
      queue.clearFaults();
      post({ type: 'reply', id: m.id, value: undefined });
      return;
    case 'createTasks':
      try {
        post({ type: 'reply', id: m.id, value: await queue.createTasks(m.n, m.template) });
      } catch (error) {
        post({ type: 'reply', id: m.id, error: errorShape(error) });
      }
      return;
    case 'close':
      await queue.close();
      post({ type: 'reply', id: m.id, value: undefined });
      port.close();
      return;
  }
});

post({ type: 'ready', rootUrl: queue.rootUrl, rootCredentials: queue.rootCredentials, methods });
