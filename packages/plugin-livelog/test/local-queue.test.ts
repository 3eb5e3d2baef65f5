// End to end through @tcw/local-queue: the real queue (and its artifact re-create rules) over HTTP, core's
// TaskclusterQueue on the unmodified taskcluster-client 87.1.3, a real Worker; the engine is the mock.
import { mkdtemp, rm } from 'node:fs/promises';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createTaskclusterQueue, type PluginV1, type TaskHookContext, Worker } from '@tcw/core';
import { startLocalQueue, suppressSqliteExperimentalWarning } from '@tcw/local-queue';
import { createMockEngine } from '@tcw/testing';
import taskcluster from 'taskcluster-client';
import { expect, it } from 'vitest';
import { LIVE_LOG_NAME, livelog } from '../src/index.js';

const TASK_QUEUE = 'local-test/livelog';

it('publishes live.log as a reference while the task runs, then a link the queue follows to the backing log', async () => {
  suppressSqliteExperimentalWarning();
  const dir = await mkdtemp(join(tmpdir(), 'tcw-livelog-lq-'));
  const lq = await startLocalQueue({ stateDir: join(dir, 'state'), config: { claimWorkTimeout: 1 } });
  const root = new taskcluster.Queue({ rootUrl: lq.rootUrl, credentials: lq.rootCredentials });
  let release!: () => void;
  const released = new Promise<void>((r) => {
    release = r;
  });
  let reached!: (ctx: TaskHookContext) => void;
  const started = new Promise<TaskHookContext>((r) => {
    reached = r;
  });
  const gate: PluginV1 = {
    specificationVersion: 'v1',
    name: 'test-gate',
    taskPlugin: () => ({
      async started(ctx) {
        reached(ctx);
        await released;
      },
    }),
  };
  const worker = new Worker({
    queue: createTaskclusterQueue({ rootUrl: lq.rootUrl, credentials: lq.rootCredentials }),
    engine: createMockEngine(),
    plugins: [livelog(), gate],
    identity: { taskQueueId: TASK_QUEUE, workerGroup: 'test-group', workerId: 'test-worker' },
    capacity: 1,
    workDir: join(dir, 'work'),
    claimPauseMs: 5,
  });
  await worker.start();
  const running = worker.run();
  try {
    const taskId = taskcluster.slugid();
    const resolved = new Promise<string>((resolve) => {
      lq.events.on('task-resolved', (m: { taskId: string; status: { state: string } }) => {
        if (m.taskId === taskId) resolve(m.status.state);
      });
    });
    await root.createTask(taskId, {
      taskQueueId: TASK_QUEUE,
      created: taskcluster.fromNowJSON('0 seconds'),
      deadline: taskcluster.fromNowJSON('1 hour'),
      payload: { mock: { log: ['hello from the task', 'second line'] } },
      metadata: {
        name: 'livelog e2e',
        description: '',
        owner: 'tests@example.com',
        source: 'https://x.test',
      },
    });
    const ctx = await started;

    const live = await root.artifact(taskId, 0, LIVE_LOG_NAME);
    expect(live.storageType).toBe('reference');
    let wrote = false;
    const text = await new Promise<string>((resolve, reject) => {
      get(live.url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
          if (body.includes('written later\n')) {
            res.destroy();
            resolve(body);
          } else if (!wrote && body.includes('second line\n')) {
            // the reader has everything so far: now the task writes more, and the reader must get it
            wrote = true;
            ctx.log.write('written later\n');
          }
        });
      }).on('error', reject);
    });
    expect(text).toContain('hello from the task\nsecond line\nwritten later\n');

    release();
    expect(await resolved).toBe('completed');
    const list = await root.listArtifacts(taskId, 0);
    const liveEntry = (list.artifacts as Array<{ name: string; storageType: string }>).find(
      (a) => a.name === LIVE_LOG_NAME,
    );
    expect(liveEntry?.storageType).toBe('link');
    const chunks: Buffer[] = [];
    await taskcluster.downloadArtifact({
      taskId,
      runId: 0,
      name: LIVE_LOG_NAME,
      queue: root,
      streamFactory: async () =>
        new Writable({
          write(chunk, _enc, cb) {
            chunks.push(Buffer.from(chunk));
            cb();
          },
        }),
    });
    const backing = Buffer.concat(chunks).toString('utf8');
    expect(backing.startsWith(text)).toBe(true);
    expect(backing).toContain('=== Task Finished === success');
  } finally {
    release();
    worker.stopGracefully('test end');
    await running;
    await lq.close();
    await rm(dir, { recursive: true, force: true });
  }
});
