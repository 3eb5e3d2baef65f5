// End to end, with real processes: the env, artifacts and livelog plugins on a native-engine worker (`tcw start`)
// against `tcw queue`, tasks created and observed through the real taskcluster-client over HTTP.
import { stat, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { join } from 'node:path';
import taskcluster from 'taskcluster-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadBuffer, envOf, nativeConfig, sha256 } from './e2e-plugins-helpers.js';
import {
  BACKING_LOG,
  cleanup,
  createTaskIn,
  downloadText,
  type Proc,
  type QueueProc,
  startQueue,
  stopAll,
  taskDefinition,
  tcw,
  tempDir,
  until,
  waitForResolution,
  writeConfig,
} from './helpers.js';

/** The HTTP status of a GET (the body is discarded). */
function statusOf(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

const LIVE_LOG = 'public/logs/live.log';

describe('plugins on a native-engine worker, against tcw queue', () => {
  let dir: string;
  let queue: QueueProc;
  let worker: Proc;
  const taskQueueId = 'tcw-e2e/native-plugins';

  beforeAll(async () => {
    dir = await tempDir('tcw-e2e-plugins-native-');
    queue = await startQueue(join(dir, 'queue'));
    const config = await writeConfig(
      dir,
      nativeConfig({
        queue,
        workDir: join(dir, 'work'),
        taskQueueId,
        plugins: {
          maxruntime: { gracePeriod: 1 },
          env: {
            extra: {
              FROM_EXTRA: 'extra-value',
              SHARED: 'from-extra',
              TASKCLUSTER_WORKER_GROUP: 'group-from-extra',
            },
          },
        },
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
  const sh = (script: string) => ['sh', '-c', script];

  describe('env', () => {
    it('a task sees the run identity, the worker identity, and config extra over the worker variables', async () => {
      const taskGroupId = taskcluster.slugid();
      const taskId = await submit({ command: ['env'] }, { taskGroupId });
      expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
      const env = envOf(await downloadText(queue.queue, taskId, BACKING_LOG));
      expect(env).toMatchObject({
        TASK_ID: taskId,
        RUN_ID: '0',
        TASK_GROUP_ID: taskGroupId,
        TASKCLUSTER_ROOT_URL: queue.rootUrl,
        TASKCLUSTER_WORKER_ID: 'w-native',
        TASKCLUSTER_TASK_QUEUE_ID: taskQueueId,
        FROM_EXTRA: 'extra-value',
        SHARED: 'from-extra',
        // the worker's own group is e2e-native: config extra wins over the worker's variables
        TASKCLUSTER_WORKER_GROUP: 'group-from-extra',
      });
    });

    it('payload env wins over config extra and over the worker variables', async () => {
      const taskId = await submit({
        command: ['env'],
        env: { SHARED: 'from-payload', FROM_PAYLOAD: 'p', TASKCLUSTER_WORKER_ID: 'id-from-payload' },
      });
      expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
      const env = envOf(await downloadText(queue.queue, taskId, BACKING_LOG));
      expect(env).toMatchObject({
        TASK_ID: taskId,
        FROM_EXTRA: 'extra-value',
        SHARED: 'from-payload',
        FROM_PAYLOAD: 'p',
        TASKCLUSTER_WORKER_ID: 'id-from-payload',
      });
    });

    it.each(['TASK_ID', 'RUN_ID'])(
      'a payload setting %s is malformed-payload naming /env/<that name>',
      async (name) => {
        const taskId = await submit({ command: sh('echo should-not-run'), env: { [name]: 'mine' } });
        const status = await waitForResolution(queue.queue, taskId);
        expect(status).toMatchObject({ state: 'exception', reasonResolved: 'malformed-payload' });
        const log = await downloadText(queue.queue, taskId, BACKING_LOG);
        expect(log).toContain(`/env/${name}: ${name} is set by the worker`);
        expect(log).not.toMatch(/^should-not-run$/m);
      },
    );

    it('a payload env name that is not a variable name is malformed-payload naming /env/<NAME>', async () => {
      const taskId = await submit({ command: sh('echo should-not-run'), env: { 'BAD-NAME': 'x' } });
      const status = await waitForResolution(queue.queue, taskId);
      expect(status).toMatchObject({ state: 'exception', reasonResolved: 'malformed-payload' });
      const log = await downloadText(queue.queue, taskId, BACKING_LOG);
      expect(log).toContain('/env/BAD-NAME');
      expect(log).not.toMatch(/^should-not-run$/m);
    });
  });

  describe('artifacts', () => {
    it('file and directory artifacts are downloadable with taskcluster.downloadArtifact, sha256 intact', async () => {
      const taskId = await submit({
        command: sh(
          [
            'mkdir -p out/dir/sub',
            'head -c 300000 /dev/urandom > out/random.bin',
            'head -c 70000 /dev/urandom > out/dir/a.bin',
            'seq 1 20000 > out/dir/sub/numbers.txt',
            'cd out && sha256sum random.bin dir/a.bin dir/sub/numbers.txt',
          ].join(' && '),
        ),
        artifacts: [
          { type: 'file', path: 'out/random.bin', name: 'public/random.bin' },
          { type: 'directory', path: 'out/dir', name: 'public/dir' },
        ],
      });
      expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
      const log = await downloadText(queue.queue, taskId, BACKING_LOG);
      const sums = Object.fromEntries(
        [...log.matchAll(/^([0-9a-f]{64}) {2}(\S+)$/gm)].map((m) => [m[2]!, m[1]!]),
      );
      expect(Object.keys(sums)).toHaveLength(3);
      const random = await downloadBuffer(queue.queue, taskId, 'public/random.bin');
      expect(random.length).toBe(300000);
      expect(sha256(random)).toBe(sums['random.bin']);
      expect(sha256(await downloadBuffer(queue.queue, taskId, 'public/dir/a.bin'))).toBe(sums['dir/a.bin']);
      const numbers = await downloadBuffer(queue.queue, taskId, 'public/dir/sub/numbers.txt');
      expect(sha256(numbers)).toBe(sums['dir/sub/numbers.txt']);
      expect(numbers.toString()).toBe(`${Array.from({ length: 20000 }, (_, i) => i + 1).join('\n')}\n`);
    });

    it('the content type comes from the extension unless given', async () => {
      const taskId = await submit({
        command: sh(
          'echo "{}" > r.json && echo "<p/>" > page.html && echo x > blob.bin && echo t > custom.dat',
        ),
        artifacts: [
          { type: 'file', path: 'r.json', name: 'public/r.json' },
          { type: 'file', path: 'page.html', name: 'public/page.html' },
          { type: 'file', path: 'blob.bin', name: 'public/blob.bin' },
          { type: 'file', path: 'custom.dat', name: 'public/custom.dat', contentType: 'text/x-custom' },
        ],
      });
      expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
      const { artifacts } = await queue.queue.listArtifacts(taskId, 0);
      const types = Object.fromEntries(
        artifacts.map((a: { name: string; contentType: string }) => [a.name, a.contentType]),
      );
      expect(types['public/r.json']).toMatch(/^application\/json/);
      expect(types['public/page.html']).toMatch(/^text\/html/);
      expect(types['public/blob.bin']).toBe('application/octet-stream');
      expect(types['public/custom.dat']).toBe('text/x-custom');
      expect((await downloadText(queue.queue, taskId, 'public/r.json')).trim()).toBe('{}');
    });

    it('a missing file is an error artifact file-missing-on-worker and the task fails; an optional one does not', async () => {
      const taskId = await submit({
        command: sh('echo present > here.txt'),
        artifacts: [
          { type: 'file', path: 'here.txt', name: 'public/here.txt' },
          { type: 'file', path: 'nowhere.txt', name: 'public/nowhere.txt' },
        ],
      });
      expect((await waitForResolution(queue.queue, taskId)).state).toBe('failed');
      const err = await downloadBuffer(queue.queue, taskId, 'public/nowhere.txt').then(
        () => undefined,
        (e: Error & { reason?: string }) => e,
      );
      expect(err).toBeInstanceOf(Error);
      expect(err!.reason).toBe('file-missing-on-worker');
      expect(await downloadText(queue.queue, taskId, 'public/here.txt')).toBe('present\n');

      const optional = await submit({
        command: sh('true'),
        artifacts: [{ type: 'file', path: 'nowhere.txt', name: 'public/nowhere.txt', optional: true }],
      });
      expect((await waitForResolution(queue.queue, optional)).state).toBe('completed');
    });

    it('a path climbing out with .. is malformed-payload naming /artifacts/0/path; the command never runs', async () => {
      const taskId = await submit({
        command: sh('echo should-not-run'),
        artifacts: [{ type: 'file', path: '../../etc/passwd', name: 'public/passwd' }],
      });
      const status = await waitForResolution(queue.queue, taskId);
      expect(status).toMatchObject({ state: 'exception', reasonResolved: 'malformed-payload' });
      const log = await downloadText(queue.queue, taskId, BACKING_LOG);
      expect(log).toContain('/artifacts/0/path');
      expect(log).not.toMatch(/^should-not-run$/m);
    });

    it('a symlink leaving the task directory is refused; the other artifacts are still uploaded', async () => {
      const taskId = await submit({
        command: sh('echo fine > ok.txt && ln -s /etc/passwd escape.txt'),
        artifacts: [
          { type: 'file', path: 'ok.txt', name: 'public/ok.txt' },
          { type: 'file', path: 'escape.txt', name: 'public/escape.txt' },
        ],
      });
      const status = await waitForResolution(queue.queue, taskId);
      expect(status).toMatchObject({ state: 'exception', reasonResolved: 'malformed-payload' });
      expect(await downloadText(queue.queue, taskId, BACKING_LOG)).toContain('/artifacts/1/path');
      const err = await downloadBuffer(queue.queue, taskId, 'public/escape.txt').then(
        () => undefined,
        (e: Error & { reason?: string }) => e,
      );
      expect(err?.reason).toBe('invalid-resource-on-worker');
      expect(await downloadText(queue.queue, taskId, 'public/ok.txt')).toBe('fine\n');
    });

    it('a symlink inside a directory that leaves the task directory is an error artifact; the rest is uploaded', async () => {
      const taskId = await submit({
        command: sh('mkdir d && echo kept > d/kept.txt && ln -s /etc/passwd d/escape'),
        artifacts: [{ type: 'directory', path: 'd', name: 'public/d' }],
      });
      expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
      expect(await downloadText(queue.queue, taskId, 'public/d/kept.txt')).toBe('kept\n');
      const err = await downloadBuffer(queue.queue, taskId, 'public/d/escape').then(
        () => undefined,
        (e: Error & { reason?: string }) => e,
      );
      expect(err?.reason).toBe('invalid-resource-on-worker');
    });

    it('artifacts are uploaded for a failed task', async () => {
      const taskId = await submit({
        command: sh('echo "partial results" > results.txt; exit 1'),
        artifacts: [{ type: 'file', path: 'results.txt', name: 'public/results.txt' }],
      });
      expect((await waitForResolution(queue.queue, taskId)).state).toBe('failed');
      expect(await downloadText(queue.queue, taskId, 'public/results.txt')).toBe('partial results\n');
    });
  });

  describe('artifacts: more cases', () => {
    it('artifacts are uploaded for a task ended by its maxRunTime', async () => {
      const taskId = await submit({
        command: sh('echo "before the limit" > partial.txt; sleep 60'),
        maxRunTime: 1,
        artifacts: [{ type: 'file', path: 'partial.txt', name: 'public/partial.txt' }],
      });
      expect((await waitForResolution(queue.queue, taskId, 20_000)).state).toBe('failed');
      expect(await downloadText(queue.queue, taskId, BACKING_LOG)).toContain('maxRunTime exceeded');
      expect(await downloadText(queue.queue, taskId, 'public/partial.txt')).toBe('before the limit\n');
    });

    it('a cancelled task uploads no artifacts', async () => {
      const running = join(dir, `running-${taskcluster.slugid()}`);
      const taskId = await submit({
        command: sh(`echo made > made.txt && touch ${running} && sleep 60`),
        artifacts: [{ type: 'file', path: 'made.txt', name: 'public/made.txt' }],
      });
      await until(
        async () => (await stat(running).catch(() => undefined)) !== undefined,
        20_000,
        'task running',
      );
      await queue.queue.cancelTask(taskId);
      expect(await waitForResolution(queue.queue, taskId)).toMatchObject({
        state: 'exception',
        reasonResolved: 'canceled',
      });
      // the worker has finished with the task once its log is uploaded
      await until(
        async () =>
          (await downloadText(queue.queue, taskId, BACKING_LOG).catch(() => '')) !== '' || undefined,
        10_000,
        'log uploaded',
      );
      const { artifacts } = await queue.queue.listArtifacts(taskId, 0);
      expect(artifacts.map((a: { name: string }) => a.name)).not.toContain('public/made.txt');
    });

    it.each([
      ['file', 'naming a folder', 'mkdir thing'],
      ['directory', 'naming a file', 'echo x > thing'],
    ])(
      'type %s %s is an error artifact invalid-resource-on-worker and the task fails',
      async (type, _what, script) => {
        const taskId = await submit({
          command: sh(`${script} && echo other > other.txt`),
          artifacts: [
            { type, path: 'thing', name: 'public/thing' },
            { type: 'file', path: 'other.txt', name: 'public/other.txt' },
          ],
        });
        expect((await waitForResolution(queue.queue, taskId)).state).toBe('failed');
        const err = await downloadBuffer(queue.queue, taskId, 'public/thing').then(
          () => undefined,
          (e: Error & { reason?: string }) => e,
        );
        expect(err?.reason).toBe('invalid-resource-on-worker');
        expect(await downloadText(queue.queue, taskId, 'public/other.txt')).toBe('other\n');
      },
    );

    it('duplicate names, a task log name, and expires before the deadline are malformed-payload, each named', async () => {
      const taskId = await submit({
        command: sh('echo should-not-run'),
        artifacts: [
          { type: 'file', path: 'a', name: 'public/same', expires: taskcluster.fromNowJSON('1 minute') },
          { type: 'file', path: 'b', name: 'public/same' },
          { type: 'file', path: 'c', name: 'public/logs/live.log' },
        ],
      });
      const status = await waitForResolution(queue.queue, taskId);
      expect(status).toMatchObject({ state: 'exception', reasonResolved: 'malformed-payload' });
      const log = await downloadText(queue.queue, taskId, BACKING_LOG);
      expect(log).toContain('/artifacts/0/expires');
      expect(log).toContain('/artifacts/1/name');
      expect(log).toContain('/artifacts/2/name');
      expect(log).not.toMatch(/^should-not-run$/m);
    });
  });

  describe('artifacts: expiry', () => {
    it("expires defaults to the task's expiry and is capped by it", async () => {
      const taskExpires = taskcluster.fromNow('3 days');
      const within = taskcluster.fromNow('2 days');
      const taskId = taskcluster.slugid();
      await queue.queue.createTask(
        taskId,
        taskDefinition(
          taskQueueId,
          {
            command: sh('echo a > a.txt'),
            artifacts: [
              { type: 'file', path: 'a.txt', name: 'public/default.txt' },
              {
                type: 'file',
                path: 'a.txt',
                name: 'public/capped.txt',
                expires: taskcluster.fromNowJSON('1 year'),
              },
              { type: 'file', path: 'a.txt', name: 'public/within.txt', expires: within.toJSON() },
            ],
          },
          { expires: taskExpires.toJSON() },
        ),
      );
      expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
      const { artifacts } = await queue.queue.listArtifacts(taskId, 0);
      const expiry = (name: string) =>
        new Date(artifacts.find((a: { name: string }) => a.name === name)!.expires).getTime();
      expect(expiry('public/default.txt')).toBe(taskExpires.getTime());
      expect(expiry('public/capped.txt')).toBe(taskExpires.getTime());
      expect(expiry('public/within.txt')).toBe(within.getTime());
    });
  });

  describe('maxruntime on the native engine', () => {
    it('SIGTERM first (the task can log it), then SIGKILL after the grace period; the task fails', async () => {
      const taskId = await submit({
        command: sh("trap 'echo got-sigterm' TERM; echo looping; while true; do sleep 0.1; done"),
        maxRunTime: 1,
      });
      expect((await waitForResolution(queue.queue, taskId, 20_000)).state).toBe('failed');
      const log = await downloadText(queue.queue, taskId, BACKING_LOG);
      expect(log).toMatch(/^looping$/m);
      expect(log).toContain('maxRunTime exceeded: the task ran for its maximum run time of 1 s');
      expect(log).toContain('killed after 1 s if it is still running');
      expect(log).toMatch(/^got-sigterm$/m);
      expect(log.indexOf('maxRunTime exceeded')).toBeLessThan(log.search(/^got-sigterm$/m));
    });
  });

  describe('livelog', () => {
    it('a reader attached mid-task gets the log from byte 0, then new lines; afterwards live.log links to the backing log', async () => {
      const gate = join(dir, `go-${taskcluster.slugid()}`);
      const taskId = await submit({
        command: sh(
          `echo first-line; echo second-line; while [ ! -e ${gate} ]; do sleep 0.05; done; echo after-the-gate; sleep 0.3; echo last-line`,
        ),
      });
      // the task is running and has printed its first lines: live.log is a reference to the worker's log server
      const live = await until(
        async () => {
          const a = await queue.queue.artifact(taskId, 0, LIVE_LOG).catch(() => undefined);
          return a?.storageType === 'reference' ? a : undefined;
        },
        20_000,
        'live.log reference',
      );
      expect(live.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/log\/[A-Za-z0-9_-]{20,}$/);
      let body = '';
      const ended = new Promise<number>((resolve, reject) => {
        get(live.url, (res) => {
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', reject);
        }).on('error', reject);
      });
      await until(async () => body.includes('second-line\n'), 10_000, 'the lines written before attaching');
      expect(body).not.toContain('after-the-gate');
      // from byte 0: the reader's text starts like the log does (the logprefix header)
      expect(body).toMatch(/^\[taskcluster /);
      const beforeGate = body;
      await writeFile(gate, '');
      await until(async () => body.includes('after-the-gate\n'), 10_000, 'a line written after attaching');
      expect(await ended).toBe(200);
      expect(body.startsWith(beforeGate)).toBe(true);
      expect(body).toContain('last-line\n');

      expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
      const backing = await downloadText(queue.queue, taskId, BACKING_LOG);
      // the live stream got every byte of the log the task wrote
      expect(backing.startsWith(body.slice(0, body.indexOf('last-line\n')))).toBe(true);
      await until(
        async () => {
          const a = await queue.queue.artifact(taskId, 0, LIVE_LOG).catch(() => undefined);
          return a?.storageType !== 'reference' || undefined;
        },
        10_000,
        'live.log replaced',
      );
      // downloading through live.log (a link now) gives the full backing log
      expect(await downloadText(queue.queue, taskId, LIVE_LOG)).toBe(backing);
      const { artifacts } = await queue.queue.listArtifacts(taskId, 0);
      expect(artifacts.find((a: { name: string }) => a.name === LIVE_LOG)).toMatchObject({
        storageType: 'link',
      });
      // once the task is disposed its token is forgotten: the old URL is a 404, like any unknown token
      await until(async () => (await statusOf(live.url)) === 404 || undefined, 10_000, 'token forgotten');
      expect(await statusOf(live.url.replace(/\/log\/.*/, '/log/not-a-token'))).toBe(404);
    });
  });
});
