import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ArtifactUploader,
  composeWorkerSchema,
  type EngineV1,
  type ResultSetV1,
  type SandboxBuilderV1,
  type SandboxV1,
  silentLogger,
  TaskLog,
} from '@tcw/core';
import { FakeQueue } from './fake-queue.js';

export interface SandboxRun {
  result: ResultSetV1;
  sandbox: SandboxV1;
  /** The task log as written so far (closed after the run). */
  log(): Promise<string>;
  queue: FakeQueue;
  taskId: string;
  /** Disposes the result set and removes the log. */
  dispose(): Promise<void>;
}

export interface RunSandboxOptions {
  /** Called with the builder before the sandbox starts (set env, attach volumes). */
  configure?: (builder: SandboxBuilderV1) => void | Promise<void>;
  /** Called once the sandbox has started (abort it, say). */
  onStarted?: (sandbox: SandboxV1) => void | Promise<void>;
}

/**
 * Runs one payload on an engine directly (no plugins, no worker loop): validates it against the engine's schema,
 * builds, starts, waits. The engine sees a claimed run of a `FakeQueue`, so artifact uploads work.
 */
export async function runSandbox(
  engine: EngineV1,
  payload: Record<string, unknown>,
  options: RunSandboxOptions = {},
): Promise<SandboxRun> {
  const schema = composeWorkerSchema(engine, []);
  schema.assertValid(payload);
  const queue = new FakeQueue({ longPollMs: 1 });
  const taskId = queue.createTask(payload);
  const [claim] = await queue.claimWork('tcw-test/fake', { workerGroup: 'g', workerId: 'w', tasks: 1 });
  if (!claim) throw new Error('fake queue did not hand out the task');
  const dir = await mkdtemp(join(tmpdir(), 'tcw-sandbox-run-'));
  const log = TaskLog.create(join(dir, 'log'));
  const artifacts = new ArtifactUploader({
    queue,
    taskId,
    runId: 0,
    credentials: () => claim.credentials,
    taskExpires: claim.task.expires,
    tempDir: dir,
  });
  const builder = await engine.newSandboxBuilder({
    task: {
      taskId,
      runId: 0,
      task: claim.task,
      worker: { taskQueueId: 'tcw-test/fake', workerGroup: 'g', workerId: 'w' },
      rootUrl: queue.rootUrl,
    },
    payload: schema.pick(payload, `engine:${engine.name}`),
    log,
    signal: new AbortController().signal,
    logger: silentLogger,
    artifacts,
    credentials: () => claim.credentials,
  });
  try {
    await options.configure?.(builder);
  } catch (error) {
    await builder.discard();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const sandbox = await builder.start();
  await options.onStarted?.(sandbox);
  const result = await sandbox.wait();
  return {
    result,
    sandbox,
    queue,
    taskId,
    async log() {
      const chunks: Buffer[] = [];
      const reader = log.createReader();
      await log.close();
      for await (const chunk of reader) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
    async dispose() {
      await result.dispose();
      await log.remove();
      await artifacts.dispose();
      await queue.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
