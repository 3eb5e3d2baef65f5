// End to end with the docker engine (issue 6's acceptance): `tcw queue` and `tcw start` (engine: docker) as child
// processes, a real dockerd, tasks created and observed through the real taskcluster-client over HTTP.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  containersOfTask,
  docker,
  dockerConfig,
  downloadBytes,
  IMAGE,
  importImage,
  rand,
  saveGzip,
  startRegistry,
} from './e2e-docker-helpers.js';
import {
  BACKING_LOG,
  cleanup,
  createTaskIn,
  downloadText,
  type Proc,
  type QueueProc,
  startQueue,
  stopAll,
  tcw,
  tempDir,
  until,
  waitForResolution,
  writeConfig,
} from './helpers.js';

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
    await stopAll(worker, queue);
    await cleanup(dir);
  });

  const submit = (payload: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    createTaskIn(queue, taskQueueId, payload, extra);
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

  it('a task-image: task B runs in the image that task A uploaded as a docker save artifact', async () => {
    // the image to ship: one of its own (not the base image's ID), then removed locally so B can only get it by
    // loading A's artifact
    const shipped = `tcw-e2e/shipped-${rand()}:v1`;
    const secret = `shipped marker ${rand()}`;
    const baker = `tcw-e2e/baker-${rand()}:v1`;
    await importImage(shipped, { 'marker.txt': secret });
    const tarball = saveGzip(shipped);
    await importImage(baker, { 'image.tar.gz': tarball });
    await docker('rmi', shipped);
    try {
      const a = await submit({
        image: baker,
        command: ['true'],
        artifacts: [{ type: 'file', path: '/image.tar.gz', name: 'public/image.tar.gz' }],
      });
      expect((await waitForResolution(queue.queue, a)).state).toBe('completed');
      expect(sha256(await downloadBytes(queue.queue, a, 'public/image.tar.gz'))).toBe(sha256(tarball));

      const b = await submit({
        image: { type: 'task-image', taskId: a, path: 'public/image.tar.gz' },
        command: ['cat', '/marker.txt'],
      });
      const status = await waitForResolution(queue.queue, b, 60_000);
      const log = await downloadText(queue.queue, b, BACKING_LOG);
      expect(status.state, log).toBe('completed');
      expect(log).toContain(secret);
    } finally {
      await docker('rmi', '-f', baker, shipped).catch(() => '');
    }
  });

  it('an image only in the local registry is pulled, and the task completes', async () => {
    const registry = await startRegistry();
    const local = `tcw-e2e/pushed-${rand()}:v1`;
    const remote = `${registry.host}/tcw-e2e/pulled-${rand()}:v1`;
    const secret = `pulled marker ${rand()}`;
    try {
      await importImage(local, { 'marker.txt': secret });
      await docker('tag', local, remote);
      await docker('push', remote);
      await docker('rmi', local, remote);
      await expect(docker('image', 'inspect', remote)).rejects.toThrow();
      const taskId = await submit({ image: remote, command: ['cat', '/marker.txt'] });
      const status = await waitForResolution(queue.queue, taskId, 60_000);
      const log = await downloadText(queue.queue, taskId, BACKING_LOG);
      expect(status.state, log).toBe('completed');
      expect(log).toContain(secret);
      await docker('image', 'inspect', remote); // now present: it was pulled
    } finally {
      await docker('rmi', '-f', local, remote).catch(() => '');
      await registry.stop();
    }
  });

  it('capabilities.privileged is refused (malformed-payload) on a worker not configured for it', async () => {
    const taskId = await submit(sh('echo should not run', { capabilities: { privileged: true } }), {
      scopes: ['docker-worker:capability:privileged'],
    });
    const status = await waitForResolution(queue.queue, taskId);
    expect(status).toMatchObject({ state: 'exception', reasonResolved: 'malformed-payload' });
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    expect(log).toContain('/capabilities/privileged');
    expect(log).toContain('allowPrivileged');
    expect(log).not.toContain('should not run');
  });

  it('cancelTask during a running container task: the container is gone within 2 s', async () => {
    const taskId = await submit(sh('echo started; sleep 600'));
    await until(
      async () => (await containersOfTask(taskId, 'running')).length > 0,
      20_000,
      'container running',
    );
    await queue.queue.cancelTask(taskId);
    const cancelledAt = Date.now();
    await until(async () => (await containersOfTask(taskId)).length === 0, 2000, 'container gone');
    expect(Date.now() - cancelledAt).toBeLessThanOrEqual(2000);
    expect(await waitForResolution(queue.queue, taskId)).toMatchObject({
      state: 'exception',
      reasonResolved: 'canceled',
    });
  });
});

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('tcw start with the docker engine: privileged when configured, and recovery after kill -9', () => {
  let dir: string;
  let queue: QueueProc;
  let config: string;
  let worker: Proc;
  const taskQueueId = 'tcw-e2e/docker-2';

  beforeAll(async () => {
    dir = await tempDir('tcw-e2e-docker2-');
    queue = await startQueue(join(dir, 'queue'));
    config = await writeConfig(
      dir,
      dockerConfig({
        queue,
        workDir: join(dir, 'work'),
        taskQueueId,
        workerId: 'd2',
        docker: { allowPrivileged: true },
      }),
    );
    worker = tcw(['start', '--config', config]);
    await worker.waitFor(/worker started/);
  });

  afterAll(async () => {
    await stopAll(worker, queue);
    await cleanup(dir);
  });

  const submit = (payload: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    createTaskIn(queue, taskQueueId, payload, extra);

  it('with allowPrivileged, a privileged task still needs the scope docker-worker:capability:privileged', async () => {
    const taskId = await submit({
      image: IMAGE,
      command: ['echo', 'should not run'],
      capabilities: { privileged: true },
    });
    const status = await waitForResolution(queue.queue, taskId);
    expect(status).toMatchObject({ state: 'exception', reasonResolved: 'malformed-payload' });
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    expect(log).toContain('/capabilities/privileged');
    expect(log).toContain('lacks the scope docker-worker:capability:privileged');
    expect(log).not.toContain('should not run');
  });

  it('with allowPrivileged and the scope, the privileged container is requested from dockerd', async () => {
    // Whether dockerd can run a privileged container depends on the machine (in an unprivileged CI container it
    // cannot apply the capabilities): ask the docker CLI first, and expect the same outcome through tcw.
    const runtimeAllows = await docker('run', '--rm', '--privileged', IMAGE, 'true').then(
      () => true,
      () => false,
    );
    const taskId = await submit(
      {
        image: IMAGE,
        command: ['sh', '-c', 'echo privileged run; ip link add dummy0 type dummy && echo netadmin ok'],
        capabilities: { privileged: true },
      },
      { scopes: ['docker-worker:capability:privileged'] },
    );
    const status = await waitForResolution(queue.queue, taskId);
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    expect(log).not.toContain('lacks the scope');
    expect(log).not.toContain('allowPrivileged is off');
    if (runtimeAllows) {
      expect(status.state, log).toBe('completed');
      expect(log).toContain('netadmin ok');
    } else {
      expect(status, log).toMatchObject({ state: 'exception', reasonResolved: 'internal-error' });
      // dockerd's own reason is in the task log
      expect(log).toMatch(/^\[taskcluster:error [^\]]+\] dockerd could not start the container: .*\S/m);
    }
  });

  it('after kill -9 of the worker during a container task, the restarted worker removes the leftover container', async () => {
    const taskId = await submit({ image: IMAGE, command: ['sh', '-c', 'echo started; sleep 600'] });
    const [container] = await until(
      async () => {
        const running = await containersOfTask(taskId, 'running');
        return running.length > 0 ? running : undefined;
      },
      20_000,
      'container running',
    );
    worker.kill('SIGKILL');
    expect(await worker.exited).toBe(null);
    // nothing cleaned up after the crash: the container is still there
    expect(await docker('inspect', '--format', '{{.State.Running}}', container!)).toBe('true');

    worker = tcw(['start', '--config', config]);
    await worker.waitFor(/worker started/);
    // the engine removes its predecessor's leftovers while starting, before the worker claims anything
    const removal = await worker.waitFor(
      /"container":"(\w+)"[^\n]*removing a container left by a previous worker/,
    );
    expect(removal[1]!.startsWith(container!)).toBe(true);
    expect(worker.stderr().indexOf('removing a container left')).toBeLessThan(
      worker.stderr().indexOf('worker started'),
    );
    await expect(docker('inspect', container!)).rejects.toThrow(/No such object/i);
    // and the restarted worker runs tasks
    const next = await submit({ image: IMAGE, command: ['echo', 'after restart'] });
    expect((await waitForResolution(queue.queue, next)).state).toBe('completed');
  });
});
