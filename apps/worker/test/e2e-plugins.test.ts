// End to end, with real processes: the env (on an engine without env), maxruntime and logprefix plugins on a
// script-engine worker (`tcw start`) against `tcw queue`, tasks created and observed with taskcluster-client.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BACKING_LOG,
  cleanup,
  createTaskIn,
  downloadText,
  type Proc,
  processesWith,
  type QueueProc,
  scriptConfig,
  startQueue,
  stopAll,
  tcw,
  tempDir,
  until,
  waitForResolution,
  writeConfig,
} from './helpers.js';

describe('plugins on a script-engine worker, against tcw queue', () => {
  let dir: string;
  let markers: string;
  let config: string;
  let queue: QueueProc;
  let worker: Proc;
  const taskQueueId = 'tcw-e2e/script-plugins';

  beforeAll(async () => {
    dir = await tempDir('tcw-e2e-plugins-script-');
    markers = join(dir, 'markers');
    await mkdir(markers);
    queue = await startQueue(join(dir, 'queue'));
    config = await writeConfig(
      dir,
      scriptConfig({
        queue,
        markerDir: markers,
        workDir: join(dir, 'work'),
        capacity: 2,
        taskQueueId,
        extra: {
          plugins: {
            disabled: [],
            logprefix: { values: { imageVersion: '2026.11.3', region: 'lab-1', gpu: false } },
            maxruntime: { maxRunTime: 30, gracePeriod: 1 },
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

  const submit = (payload: Record<string, unknown>) => createTaskIn(queue, taskQueueId, payload);

  describe('env', () => {
    it('the script engine has no env capability: the env key is absent from the composed schema', async () => {
      const schema = tcw(['schema', '--config', config]);
      expect(await schema.exited).toBe(0);
      const composed = JSON.parse(schema.stdout()) as { properties: Record<string, unknown> };
      expect(composed.properties).not.toHaveProperty('env');
      // the other default plugins' keys are there
      expect(composed.properties).toHaveProperty('maxRunTime');
    });

    it('a task using env is malformed-payload naming /env; the script never starts', async () => {
      const taskId = await submit({ env: { FOO: 'bar' } });
      const status = await waitForResolution(queue.queue, taskId);
      expect(status).toMatchObject({ state: 'exception', reasonResolved: 'malformed-payload' });
      const log = await downloadText(queue.queue, taskId, BACKING_LOG);
      expect(log).toContain(
        '/env: this payload key does not exist on this worker (plugin:env: needs engine capability env',
      );
      await expect(readFile(join(markers, taskId))).rejects.toThrow(/ENOENT/);
    });
  });

  describe('maxruntime', () => {
    it('payload maxRunTime 1 on a task sleeping 60 s: failed, a clear line in the log, the process tree gone', async () => {
      const marker = `${8000 + Math.floor(Math.random() * 999)}.25`;
      const taskId = await submit({ maxRunTime: 1, tree: marker, sleepMs: 60_000, stdout: 'going to sleep' });
      const status = await waitForResolution(queue.queue, taskId, 20_000);
      expect(status.state).toBe('failed');
      const log = await downloadText(queue.queue, taskId, BACKING_LOG);
      expect(log).toContain('going to sleep');
      expect(log).toContain('tree started');
      expect(log).toMatch(/maxRunTime: 1 s/);
      expect(log).toMatch(
        /maxRunTime exceeded: the task ran for its maximum run time of 1 s;.*The task fails\./,
      );
      // the script was ended before its 60 s sleep: it never wrote its end marker
      expect(await readFile(join(markers, taskId), 'utf8')).not.toMatch(/^end /m);
      await until(
        async () => (await processesWith(marker)).length === 0,
        5000,
        'every process of the task gone',
      );
    });

    it('a payload maxRunTime above the configured ceiling is malformed-payload naming /maxRunTime', async () => {
      const taskId = await submit({ maxRunTime: 31 });
      const status = await waitForResolution(queue.queue, taskId);
      expect(status).toMatchObject({ state: 'exception', reasonResolved: 'malformed-payload' });
      expect(await downloadText(queue.queue, taskId, BACKING_LOG)).toContain('/maxRunTime: must be <= 30');
      await expect(readFile(join(markers, taskId))).rejects.toThrow(/ENOENT/);
    });

    it('a task within its maxRunTime completes', async () => {
      const taskId = await submit({ maxRunTime: 30, sleepMs: 200 });
      expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
    });
  });

  describe('logprefix', () => {
    it('the configured values and the task and worker identity are at the top of the log, before the task output', async () => {
      const taskId = await submit({ stdout: 'the task output' });
      expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
      const log = await downloadText(queue.queue, taskId, BACKING_LOG);
      const lines = log.split('\n');
      const at = (re: RegExp) => {
        const i = lines.findIndex((l) => re.test(l));
        expect(i, `${re} in\n${log}`).toBeGreaterThanOrEqual(0);
        return i;
      };
      const output = at(/^the task output$/);
      const header = [
        at(new RegExp(`^\\[taskcluster [^\\]]+\\] Task ${taskId}\\s+run 0 on e2e/w1 \\(${taskQueueId}\\)`)),
        at(new RegExp(`^\\[taskcluster [^\\]]+\\] taskId:\\s+${taskId}$`)),
        at(/^\[taskcluster [^\]]+\] runId:\s+0$/),
        at(/^\[taskcluster [^\]]+\] workerGroup:\s+e2e$/),
        at(/^\[taskcluster [^\]]+\] workerId:\s+w1$/),
        at(new RegExp(`^\\[taskcluster [^\\]]+\\] taskQueueId:\\s+${taskQueueId}$`)),
        at(/^\[taskcluster [^\]]+\] tcwCoreVersion:\s+\d+\.\d+\.\d+/),
        at(/^\[taskcluster [^\]]+\] tasksSinceStart:\s+\d+$/),
        at(/^\[taskcluster [^\]]+\] imageVersion:\s+2026\.11\.3$/),
        at(/^\[taskcluster [^\]]+\] region:\s+lab-1$/),
        at(/^\[taskcluster [^\]]+\] gpu:\s+false$/),
      ];
      expect(header).toEqual([...header].sort((a, b) => a - b));
      expect(Math.max(...header)).toBeLessThan(output);
      // at the top: nothing but taskcluster lines before the header ends
      expect(lines.slice(0, header[header.length - 1]! + 1).every((l) => l.startsWith('[taskcluster'))).toBe(
        true,
      );
    });
  });
});
