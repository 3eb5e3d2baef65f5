// End to end through @tcw/local-queue: the real queue and object service over HTTP, core's TaskclusterQueue on
// the unmodified taskcluster-client 87.1.3, a real Worker; only the engine is the mock (files from the payload).
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createTaskclusterQueue, Worker } from '@tcw/core';
import { type LocalQueue, startLocalQueue, suppressSqliteExperimentalWarning } from '@tcw/local-queue';
import { createMockEngine } from '@tcw/testing';
import taskcluster from 'taskcluster-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifacts } from '../src/index.js';
import { recordingLogger } from './helpers.js';

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const TASK_QUEUE = 'local-test/artifacts';

describe('artifacts plugin through the local queue', () => {
  let dir: string;
  let lq: LocalQueue;
  let root: InstanceType<typeof taskcluster.Queue>;
  let worker: Worker;
  let running: Promise<unknown>;
  const records: Array<{ level: string; fields: object; message?: string }> = [];

  beforeAll(async () => {
    suppressSqliteExperimentalWarning();
    dir = await mkdtemp(join(tmpdir(), 'tcw-artifacts-lq-'));
    lq = await startLocalQueue({ stateDir: join(dir, 'state'), config: { claimWorkTimeout: 1 } });
    root = new taskcluster.Queue({ rootUrl: lq.rootUrl, credentials: lq.rootCredentials });
    worker = new Worker({
      queue: createTaskclusterQueue({ rootUrl: lq.rootUrl, credentials: lq.rootCredentials }),
      engine: createMockEngine(),
      plugins: [artifacts()],
      identity: { taskQueueId: TASK_QUEUE, workerGroup: 'test-group', workerId: 'test-worker' },
      capacity: 1,
      workDir: join(dir, 'work'),
      claimPauseMs: 5,
      logger: recordingLogger(records),
    });
    await worker.start();
    running = worker.run();
  });

  afterAll(async () => {
    worker.stopGracefully('test end');
    await running;
    await lq.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function runTask(payload: Record<string, unknown>): Promise<{ taskId: string; state: string }> {
    const taskId = taskcluster.slugid();
    const resolved = new Promise<string>((resolve) => {
      const onResolved = (m: { taskId: string; status: { state: string } }) => {
        if (m.taskId !== taskId) return;
        lq.events.off('task-resolved', onResolved);
        resolve(m.status.state);
      };
      lq.events.on('task-resolved', onResolved);
    });
    await root.createTask(taskId, {
      taskQueueId: TASK_QUEUE,
      created: taskcluster.fromNowJSON('0 seconds'),
      deadline: taskcluster.fromNowJSON('1 hour'),
      payload,
      metadata: {
        name: 'artifacts e2e',
        description: '',
        owner: 'tests@example.com',
        source: 'https://x.test',
      },
    });
    return { taskId, state: await resolved };
  }

  async function download(taskId: string, name: string): Promise<{ data: Buffer; contentType: string }> {
    const chunks: Buffer[] = [];
    const stream = new Writable({
      write(chunk, _enc, cb) {
        chunks.push(Buffer.from(chunk));
        cb();
      },
    });
    const contentType = await taskcluster.downloadArtifact({
      taskId,
      runId: 0,
      name,
      queue: root,
      streamFactory: async () => stream,
    });
    return { data: Buffer.concat(chunks), contentType };
  }

  it('uploads files and folders that download intact, gzip-encoded text included', async () => {
    const text = 'a line of build output\n'.repeat(2000);
    const blob = randomBytes(200_000).toString('base64');
    const { taskId, state } = await runTask({
      mock: { files: { 'out/build.log': text, 'out/sub/blob.bin': blob, 'single.json': '{"a":1}' } },
      artifacts: [
        { type: 'directory', path: 'out', name: 'public/out' },
        { type: 'file', path: 'single.json', name: 'public/single.json' },
        { type: 'file', path: 'missing.txt', name: 'public/missing.txt', optional: true },
      ],
    });
    expect(state).toBe('completed');
    const log = await download(taskId, 'public/out/build.log');
    expect(sha256(log.data)).toBe(sha256(text));
    expect(log.contentType).toBe('text/plain; charset=utf-8');
    expect(sha256((await download(taskId, 'public/out/sub/blob.bin')).data)).toBe(sha256(blob));
    expect((await download(taskId, 'public/single.json')).data.toString()).toBe('{"a":1}');
    const list = await root.listArtifacts(taskId, 0);
    const byName = new Map(
      (list.artifacts as Array<{ name: string; storageType: string }>).map((a) => [a.name, a.storageType]),
    );
    expect(byName.get('public/missing.txt')).toBe('error');
    expect(byName.get('public/logs/live_backing.log')).toBe('object');
    expect(await root.artifact(taskId, 0, 'public/missing.txt')).toMatchObject({
      storageType: 'error',
      reason: 'file-missing-on-worker',
    });
  });

  it('retries object PUTs the object service answers 503, and the artifact arrives intact', async () => {
    const blob = randomBytes(300_000).toString('base64');
    lq.injectFaults({ route: 'objectPut', count: 2, status: 503 });
    const { taskId, state } = await runTask({
      mock: { files: { 'retry.bin': blob } },
      artifacts: [{ type: 'file', path: 'retry.bin', name: 'public/retry.bin' }],
    });
    lq.clearFaults();
    expect(state).toBe('completed');
    const retries = records.filter((r) => r.message === 'artifact PUT failed, retrying');
    expect(retries.map((r) => (r.fields as { err?: string }).err)).toEqual([
      expect.stringContaining('answered 503'),
      expect.stringContaining('answered 503'),
    ]);
    const got = await download(taskId, 'public/retry.bin');
    expect(got.data.length).toBe(blob.length);
    expect(sha256(got.data)).toBe(sha256(blob));
  });

  it('fails the task with a file-missing-on-worker error artifact', async () => {
    const { taskId, state } = await runTask({
      mock: {},
      artifacts: [{ type: 'file', path: 'nope.txt', name: 'public/nope.txt' }],
    });
    expect(state).toBe('failed');
    expect(await root.artifact(taskId, 0, 'public/nope.txt')).toMatchObject({
      storageType: 'error',
      reason: 'file-missing-on-worker',
    });
  });
});
