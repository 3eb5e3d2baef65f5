// Helpers of the plugin end-to-end tests (e2e-plugins*.test.ts).
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import taskcluster from 'taskcluster-client';
import type { QueueProc } from './helpers.js';

/** Downloads an artifact with taskcluster.downloadArtifact into a Buffer. */
export async function downloadBuffer(
  queue: QueueProc['queue'],
  taskId: string,
  name: string,
  runId?: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await taskcluster.downloadArtifact({
    taskId,
    ...(runId === undefined ? {} : { runId }),
    name,
    queue,
    streamFactory: () => {
      chunks.length = 0;
      const pass = new PassThrough();
      pass.on('data', (c: Buffer) => chunks.push(c));
      return pass;
    },
  });
  return Buffer.concat(chunks);
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A config for a native-engine worker that runs tasks as the worker's (root) user. */
export function nativeConfig(options: {
  queue: QueueProc;
  workDir: string;
  taskQueueId: string;
  workerGroup?: string;
  workerId?: string;
  plugins?: Record<string, unknown>;
}): Record<string, unknown> {
  return {
    rootUrl: options.queue.rootUrl,
    credentials: options.queue.credentials,
    worker: {
      taskQueueId: options.taskQueueId,
      workerGroup: options.workerGroup ?? 'e2e-native',
      workerId: options.workerId ?? 'w-native',
      capacity: 2,
      workDir: options.workDir,
      cancelPollInterval: 0.25,
      abortGracePeriod: 1,
    },
    engine: 'native',
    engines: {
      native: {
        user: 'current',
        allowRoot: true,
        killGracePeriod: 1,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      },
    },
    plugins: { disabled: [], ...options.plugins },
    logging: { level: 'debug', pretty: false },
  };
}

/** `NAME=value` lines of an `env` dump in a log, as a record. */
export function envOf(log: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of log.matchAll(/^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/gm)) out[m[1]!] = m[2]!;
  return out;
}
