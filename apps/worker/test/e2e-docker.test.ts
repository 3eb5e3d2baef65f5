// End to end with the docker engine (issue 6's acceptance): `tcw queue` and `tcw start` (engine: docker) as child
// processes, a real dockerd, tasks created and observed through the real taskcluster-client over HTTP.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import taskcluster from 'taskcluster-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containersOfTask, dockerConfig, downloadBytes, IMAGE } from './e2e-docker-helpers.js';
import {
  cleanup,
  downloadText,
  type Proc,
  type QueueProc,
  startQueue,
  taskDefinition,
  tcw,
  tempDir,
  until,
  waitForResolution,
  writeConfig,
} from './helpers.js';

const BACKING_LOG = 'public/logs/live_backing.log';

describe('tcw start with the docker engine, against tcw queue', () => {
  let dir: string;
  let queue: QueueProc;
  let worker: Proc;
  const taskQueueId = 'tcw-e2e/docker';

  beforeAll(async () => {
    dir = await tempDir('tcw-e2e-docker-');
    queue = await startQueue(join(dir, 'queue'));
    const config = await writeConfig(
      dir,
      dockerConfig({ queue, workDir: join(dir, 'work'), taskQueueId, workerId: 'd1' }),
    );
    worker = tcw(['start', '--config', config]);
    await worker.waitFor(/worker started/);
  });

  afterAll(async () => {
    worker?.kill('SIGTERM');
    await worker?.exited;
    queue?.kill('SIGTERM');
    await queue?.exited;
    await cleanup(dir);
  });

  const submit = async (payload: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
    const taskId = taskcluster.slugid();
    await queue.queue.createTask(taskId, taskDefinition(taskQueueId, payload, extra));
    return taskId;
  };
  const sh = (script: string, more: Record<string, unknown> = {}) => ({
    image: IMAGE,
    command: ['sh', '-c', script],
    ...more,
  });

  it.each([
    [0, 'completed'],
    [1, 'failed'],
    [42, 'failed'],
  ])('exit %i resolves %s, and the log is uploaded', async (exitCode, state) => {
    const taskId = await submit(sh(`echo "exiting ${exitCode} in a container"; exit ${exitCode}`));
    const status = await waitForResolution(queue.queue, taskId);
    expect(status.state).toBe(state);
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    expect(log).toContain(`exiting ${exitCode} in a container`);
    expect(log).toMatch(/^\[taskcluster \d{4}-/);
    // the container is removed once the task is over (disposal may finish just after the resolution)
    await until(async () => (await containersOfTask(taskId)).length === 0, 10_000, 'container removed');
  });

  it('stdout and stderr lines keep the order the task wrote them in', async () => {
    const script = 'for i in 1 2 3 4 5; do echo "out $i"; sleep 0.05; echo "err $i" >&2; sleep 0.05; done';
    const taskId = await submit(sh(script));
    expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    const lines = log.split('\n').filter((l) => /^(out|err) \d$/.test(l));
    expect(lines).toEqual([1, 2, 3, 4, 5].flatMap((i) => [`out ${i}`, `err ${i}`]));
  });

  it('payload env and TASK_ID are visible in the container', async () => {
    const taskId = await submit(
      sh('echo "greeting=$GREETING"; echo "quoted=$QUOTED"; echo "task=$TASK_ID"', {
        env: { GREETING: 'hello from tcw', QUOTED: `it's "quoted" $HOME` },
      }),
    );
    expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    expect(log).toContain('greeting=hello from tcw\n');
    expect(log).toContain(`quoted=it's "quoted" $HOME\n`);
    expect(log).toContain(`task=${taskId}\n`);
  });

  it('file and directory artifacts are downloadable with taskcluster.downloadArtifact, content intact', async () => {
    const numbers = Array.from({ length: 3000 }, (_, i) => `${i + 1}`).join('\n') + '\n';
    const script = [
      'mkdir -p /out/dir/sub',
      'echo "single file" > /out/single.txt',
      'seq 1 3000 > /out/dir/numbers.txt',
      'echo "{\\"ok\\":true}" > /out/dir/sub/result.json',
      "printf '\\000\\001\\002\\377binary' > /out/dir/sub/blob.bin",
    ].join(' && ');
    const taskId = await submit(
      sh(script, {
        artifacts: [
          { type: 'file', path: '/out/single.txt', name: 'public/single.txt' },
          { type: 'directory', path: '/out/dir', name: 'public/dir' },
        ],
      }),
    );
    expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
    const { artifacts } = await queue.queue.listArtifacts(taskId, 0);
    expect(artifacts.map((a: { name: string }) => a.name).sort()).toEqual([
      'public/dir/numbers.txt',
      'public/dir/sub/blob.bin',
      'public/dir/sub/result.json',
      'public/logs/live.log',
      'public/logs/live_backing.log',
      'public/single.txt',
    ]);
    expect(await downloadText(queue.queue, taskId, 'public/single.txt')).toBe('single file\n');
    expect(await downloadText(queue.queue, taskId, 'public/dir/numbers.txt')).toBe(numbers);
    expect(await downloadText(queue.queue, taskId, 'public/dir/sub/result.json')).toBe('{"ok":true}\n');
    expect(await downloadBytes(queue.queue, taskId, 'public/dir/sub/blob.bin')).toEqual(
      Buffer.from([0, 1, 2, 255, ...Buffer.from('binary')]),
    );
  });
});

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
