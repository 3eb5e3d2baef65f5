// End to end, with real processes: the plugins that stop the worker (stoponerror, reboot, watchdog) and the
// maxruntime perTaskLimit settings, each on its own script-engine `tcw start` against one `tcw queue`.
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import taskcluster from 'taskcluster-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeConfig } from './e2e-plugins-helpers.js';
import {
  BACKING_LOG,
  cleanup,
  createTaskIn,
  downloadText,
  type Proc,
  type QueueProc,
  scriptConfig,
  startQueue,
  taskDefinition,
  tcw,
  tempDir,
  until,
  waitForResolution,
  writeConfig,
} from './helpers.js';

describe('plugins that stop the worker, and maxruntime settings', () => {
  let dir: string;
  let queue: QueueProc;
  const workers: Proc[] = [];

  beforeAll(async () => {
    dir = await tempDir('tcw-e2e-plugins-ops-');
    // a short claimWork long-poll, so that an idle worker's loop turns at least every second (for the watchdog)
    const queueConfig = join(dir, 'queue.json');
    await writeFile(queueConfig, JSON.stringify({ claimWorkTimeout: 1 }));
    queue = await startQueue(join(dir, 'queue'), ['--config', queueConfig]);
  });

  afterAll(async () => {
    for (const w of workers) {
      if (w.child.exitCode === null && w.child.signalCode === null) {
        w.kill('SIGKILL');
        await w.exited;
      }
    }
    queue?.child.kill('SIGCONT');
    queue?.kill('SIGTERM');
    await queue?.exited;
    await cleanup(dir);
  });

  /** Starts a script-engine worker on its own task queue with these plugins (next to the default set). */
  const startWorker = async (name: string, plugins: Record<string, unknown>) => {
    const base = join(dir, name);
    await mkdir(join(base, 'markers'), { recursive: true });
    const taskQueueId = `tcw-e2e/${name}`;
    const config = await writeConfig(
      base,
      scriptConfig({
        queue,
        markerDir: join(base, 'markers'),
        workDir: join(base, 'work'),
        taskQueueId,
        extra: { plugins: { disabled: [], ...plugins } },
      }),
    );
    const worker = tcw(['start', '--config', config]);
    workers.push(worker);
    await worker.waitFor(/worker started/);
    const submit = (payload: Record<string, unknown>) => createTaskIn(queue, taskQueueId, payload);
    return { worker, submit, base, markers: join(base, 'markers') };
  };

  const stillPending = async (taskId: string) => {
    await new Promise((r) => setTimeout(r, 500));
    return (await queue.queue.status(taskId)).status.state === 'pending';
  };

  describe('stoponerror', () => {
    it('an internal error (script exit 3) resolves the task, then the worker stops gracefully and exits 0', async () => {
      const { worker, submit } = await startWorker('stoponerror', { stoponerror: {} });
      const ok = await submit({ exitCode: 0 });
      expect((await waitForResolution(queue.queue, ok)).state).toBe('completed');
      const failed = await submit({ exitCode: 1 });
      expect((await waitForResolution(queue.queue, failed)).state).toBe('failed');
      // the task's own failure does not stop the worker
      expect(worker.child.exitCode).toBeNull();

      const broken = await submit({ exitCode: 3, stderr: 'disk is gone' });
      // a failure stop, after the task was resolved: exit code 69, so a supervisor (Restart=on-failure) restarts it
      expect(await worker.exited).toBe(69);
      expect(await waitForResolution(queue.queue, broken)).toMatchObject({
        state: 'exception',
        reasonResolved: 'internal-error',
      });
      expect(await downloadText(queue.queue, broken, BACKING_LOG)).toContain('disk is gone');
      expect(worker.stderr()).toContain(`stoponerror: internal error in task ${broken}`);
      const next = await submit({ exitCode: 0 });
      expect(await stillPending(next)).toBe(true);
    });
  });

  describe('reboot', () => {
    it('maxTasks 1: after one task the worker stops, runs rebootCommand and exits; a task asking for a reboot is refused unless allowed', async () => {
      const marker = join(dir, 'rebooted-maxtasks');
      const { worker, submit, markers } = await startWorker('reboot-max', {
        reboot: { maxTasks: 1, rebootCommand: ['sh', '-c', `echo "rebooted $0" > ${marker}`, 'by-tcw'] },
      });
      // allowTaskReboots is false: the payload key does not exist
      const first = await submit({ reboot: 'always', sleepMs: 300 });
      expect(await worker.exited).toBe(0);
      expect(await waitForResolution(queue.queue, first)).toMatchObject({
        state: 'exception',
        reasonResolved: 'malformed-payload',
      });
      expect(await downloadText(queue.queue, first, BACKING_LOG)).toContain(
        '/reboot: this payload key does not exist on this worker (plugin:reboot: tasks cannot ask for a reboot on this worker (plugins.reboot.allowTaskReboots is false))',
      );
      await expect(readFile(join(markers, first))).rejects.toThrow(/ENOENT/);
      expect(await readFile(marker, 'utf8')).toBe('rebooted by-tcw\n');
      const next = await submit({ exitCode: 0 });
      expect(await stillPending(next)).toBe(true);
    });

    it('allowTaskReboots: a task with reboot: always runs, then the worker stops and runs rebootCommand', async () => {
      const marker = join(dir, 'rebooted-task');
      const { worker, submit, markers } = await startWorker('reboot-task', {
        reboot: { allowTaskReboots: true, rebootCommand: ['sh', '-c', `echo rebooted > ${marker}`] },
      });
      const plain = await submit({ exitCode: 0 });
      expect((await waitForResolution(queue.queue, plain)).state).toBe('completed');
      // a task that does not ask for it leaves the worker running, and the command is not run
      expect(worker.child.exitCode).toBeNull();
      await expect(readFile(marker)).rejects.toThrow(/ENOENT/);

      const asking = await submit({ reboot: 'always', stdout: 'please reboot' });
      expect(await worker.exited).toBe(0);
      expect((await waitForResolution(queue.queue, asking)).state).toBe('completed');
      expect(await readFile(join(markers, asking), 'utf8')).toMatch(/^end /m);
      expect(await readFile(marker, 'utf8')).toBe('rebooted\n');
    });
  });

  describe('reboot: more triggers', () => {
    it('reboot: on-failure stops the worker after a failed task, not after a completed one', async () => {
      const marker = join(dir, 'rebooted-on-failure');
      const { worker, submit } = await startWorker('reboot-on-failure', {
        reboot: { allowTaskReboots: true, rebootCommand: ['sh', '-c', `echo rebooted > ${marker}`] },
      });
      const fine = await submit({ reboot: 'on-failure', exitCode: 0 });
      expect((await waitForResolution(queue.queue, fine)).state).toBe('completed');
      const failing = await submit({ reboot: 'on-failure', exitCode: 1 });
      expect(await worker.exited).toBe(0);
      // the completed task did not stop the worker: the failing one was claimed and run
      expect((await waitForResolution(queue.queue, failing)).state).toBe('failed');
      expect(await readFile(marker, 'utf8')).toBe('rebooted\n');
    });

    it('maxLifetime: the idle worker stops after its lifetime and runs rebootCommand', async () => {
      const marker = join(dir, 'rebooted-lifetime');
      const { worker } = await startWorker('reboot-lifetime', {
        reboot: { maxLifetime: 1, rebootCommand: ['sh', '-c', `echo rebooted > ${marker}`] },
      });
      expect(await worker.exited).toBe(0);
      expect(worker.stderr()).toContain('reboot: ');
      expect(await readFile(marker, 'utf8')).toBe('rebooted\n');
    });
  });

  describe('livelog disabled', () => {
    it('the backing log is still uploaded, and there is no live.log', async () => {
      const { worker, submit } = await startWorker('no-livelog', { disabled: ['livelog'] });
      expect(worker.stderr()).not.toMatch(/"plugins":\[[^\]]*"livelog"/);
      const taskId = await submit({ stdout: 'logged without livelog', exitCode: 1 });
      expect((await waitForResolution(queue.queue, taskId)).state).toBe('failed');
      expect(await downloadText(queue.queue, taskId, BACKING_LOG)).toContain('logged without livelog');
      const { artifacts } = await queue.queue.listArtifacts(taskId, 0);
      expect(artifacts.map((a: { name: string }) => a.name)).not.toContain('public/logs/live.log');
      worker.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
    });
  });

  describe('maxruntime perTaskLimit', () => {
    it('require: a task without maxRunTime is refused naming /maxRunTime; forbid: the key does not exist', async () => {
      const required = await startWorker('mrt-require', { maxruntime: { perTaskLimit: 'require' } });
      const missing = await required.submit({ exitCode: 0 });
      expect(await waitForResolution(queue.queue, missing)).toMatchObject({
        state: 'exception',
        reasonResolved: 'malformed-payload',
      });
      expect(await downloadText(queue.queue, missing, BACKING_LOG)).toMatch(/\/maxRunTime: is required/);
      const given = await required.submit({ exitCode: 0, maxRunTime: 10 });
      expect((await waitForResolution(queue.queue, given)).state).toBe('completed');
      required.worker.kill('SIGTERM');
      expect(await required.worker.exited).toBe(0);

      const forbidden = await startWorker('mrt-forbid', {
        maxruntime: { perTaskLimit: 'forbid', maxRunTime: 1 },
      });
      const setting = await forbidden.submit({ exitCode: 0, maxRunTime: 1 });
      expect(await waitForResolution(queue.queue, setting)).toMatchObject({
        state: 'exception',
        reasonResolved: 'malformed-payload',
      });
      expect(await downloadText(queue.queue, setting, BACKING_LOG)).toContain(
        '/maxRunTime: this payload key does not exist on this worker (plugin:maxruntime: tasks cannot set their own maximum run time on this worker (plugins.maxruntime.perTaskLimit is forbid)',
      );
      // every task gets the ceiling (1 s)
      const long = await forbidden.submit({ sleepMs: 60_000 });
      expect((await waitForResolution(queue.queue, long, 20_000)).state).toBe('failed');
      expect(await downloadText(queue.queue, long, BACKING_LOG)).toContain(
        'maxRunTime exceeded: the task ran for its maximum run time of 1 s',
      );
      forbidden.worker.kill('SIGTERM');
      expect(await forbidden.worker.exited).toBe(0);
    });
  });

  describe('watchdog', () => {
    it('a task longer than the timeout is fine; when the queue stops answering the loop stalls and the watchdog stops the worker', async () => {
      const { worker, submit, markers } = await startWorker('watchdog', {
        watchdog: { timeout: 2, forceExitAfter: 2 },
      });
      // a task's process may run longer than the timeout: silence while it runs is normal
      const long = await submit({ sleepMs: 3500 });
      expect((await waitForResolution(queue.queue, long)).state).toBe('completed');
      expect(await readFile(join(markers, long), 'utf8')).toMatch(/^end /m);
      // an idle worker on a healthy queue (claimWork long-polls of 1 s) makes progress: longer than the timeout
      await new Promise((r) => setTimeout(r, 3000));
      expect(worker.child.exitCode).toBeNull();
      expect(worker.stderr()).not.toContain('watchdog:');

      // the queue stops answering: claimWork hangs, the claim loop makes no progress
      queue.child.kill('SIGSTOP');
      try {
        const code = await worker.exited;
        expect(worker.stderr()).toContain(
          'watchdog: the worker loop made no progress for 2 s (last progress: claim loop); stopping the worker',
        );
        expect(worker.stderr()).toMatch(
          /"mode":"now","reason":"watchdog: the worker loop made no progress[^"]*","fatal":true/,
        );
        // the worker stopped by itself (the hung claimWork was abandoned) before forceExitAfter: a failure stop, 69
        expect(code).toBe(69);
      } finally {
        queue.child.kill('SIGCONT');
      }
    });

    it('a hook that does not return (artifact upload to a queue that stopped answering) is named, and the worker is stopped', async () => {
      const base = join(dir, 'watchdog-hook');
      await mkdir(base, { recursive: true });
      const taskQueueId = 'tcw-e2e/watchdog-hook';
      const config = await writeConfig(
        base,
        nativeConfig({
          queue,
          workDir: join(base, 'work'),
          taskQueueId,
          plugins: { watchdog: { timeout: 2, forceExitAfter: 2 } },
        }),
      );
      const worker = tcw(['start', '--config', config]);
      workers.push(worker);
      await worker.waitFor(/worker started/);
      const running = join(base, 'running');
      const gate = join(base, 'gate');
      const taskId = taskcluster.slugid();
      await queue.queue.createTask(
        taskId,
        taskDefinition(taskQueueId, {
          command: [
            'sh',
            '-c',
            `echo out > out.txt; touch ${running}; while [ ! -e ${gate} ]; do sleep 0.05; done`,
          ],
          artifacts: [{ type: 'file', path: 'out.txt', name: 'public/out.txt' }],
        }),
      );
      await until(
        async () => (await stat(running).catch(() => undefined)) !== undefined,
        20_000,
        'task running',
      );
      queue.child.kill('SIGSTOP');
      try {
        // the task's process ends; the artifacts plugin's stopped hook cannot reach the queue
        await writeFile(gate, '');
        const code = await worker.exited;
        expect(worker.stderr()).toMatch(
          new RegExp(
            `watchdog: no progress for 2 s: hook artifacts\\.stopped \\(task ${taskId}, \\d+ s\\) has not returned`,
          ),
        );
        // the stuck upload ignores the abort: after forceExitAfter the watchdog ends the process, exit 75
        expect(worker.stderr()).toContain(
          'watchdog: the worker did not end after being stopped; exiting the process (code 75)',
        );
        expect(code).toBe(75);
      } finally {
        queue.child.kill('SIGCONT');
      }
    });
  });
});
