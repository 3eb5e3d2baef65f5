// End to end, with real processes: `tcw queue` and `tcw start` as child processes, a script-engine worker, tasks
// created and observed through the real taskcluster-client over HTTP.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import taskcluster from 'taskcluster-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  BACKING_LOG,
  cleanup,
  createTaskIn,
  DISABLED_DEFAULTS,
  downloadText,
  type Proc,
  processesWith,
  type QueueProc,
  scriptConfig,
  startQueue,
  stopAll,
  taskDefinition,
  tcw,
  tempDir,
  until,
  waitForResolution,
  writeConfig,
} from './helpers.js';

describe('tcw start with the script engine, against tcw queue', () => {
  let dir: string;
  let queue: QueueProc;
  let worker: Proc;
  let markers: string;
  const taskQueueId = 'tcw-e2e/script';

  beforeAll(async () => {
    dir = await tempDir('tcw-e2e-');
    markers = join(dir, 'markers');
    await import('node:fs/promises').then((fs) => fs.mkdir(markers));
    queue = await startQueue(join(dir, 'queue'));
    const config = await writeConfig(
      dir,
      scriptConfig({ queue, markerDir: markers, workDir: join(dir, 'work'), capacity: 4, taskQueueId }),
    );
    worker = tcw(['start', '--config', config]);
    await worker.waitFor(/worker started/);
  });

  afterAll(async () => {
    await stopAll(worker, queue);
    await cleanup(dir);
  });

  const submit = (payload: Record<string, unknown>) => createTaskIn(queue, taskQueueId, payload);

  it.each([
    [0, 'completed', undefined],
    [1, 'failed', undefined],
    [3, 'exception', 'internal-error'],
    [7, 'exception', 'internal-error'],
  ])('exit %i resolves %s %s, and the log is uploaded', async (exitCode, state, reason) => {
    const taskId = await submit({ exitCode, stdout: `exiting ${exitCode}` });
    const status = await waitForResolution(queue.queue, taskId);
    expect(status.state).toBe(state);
    if (reason) expect(status.reasonResolved).toBe(reason);
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    expect(log).toContain(`exiting ${exitCode}`);
    expect(log).toMatch(/^\[taskcluster \d{4}-/);
  });

  it('exit 2 is malformed-payload, with the script stderr in the log', async () => {
    const taskId = await submit({ exitCode: 2, stderr: 'binaryToSign must be https' });
    const status = await waitForResolution(queue.queue, taskId);
    expect(status).toMatchObject({ state: 'exception', reasonResolved: 'malformed-payload' });
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    expect(log).toContain('[worker:error] binaryToSign must be https');
  });

  it('a payload violating the schema is malformed-payload naming the field; the script never starts', async () => {
    const taskId = await submit({ exitCode: 'zero', unknown: true });
    const status = await waitForResolution(queue.queue, taskId);
    expect(status).toMatchObject({ state: 'exception', reasonResolved: 'malformed-payload' });
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    expect(log).toContain('/exitCode: must be integer');
    expect(log).toContain('/unknown: this payload key does not exist on this worker');
    await expect(readFile(join(markers, taskId))).rejects.toThrow(/ENOENT/);
  });

  it('after an internal error (exit 3) the next task still runs', async () => {
    const first = await submit({ exitCode: 3 });
    expect((await waitForResolution(queue.queue, first)).reasonResolved).toBe('internal-error');
    const second = await submit({ exitCode: 0 });
    expect((await waitForResolution(queue.queue, second)).state).toBe('completed');
  });

  it('capacity 4 runs 4 tasks at the same time', async () => {
    const ids = await Promise.all([1, 2, 3, 4].map(() => submit({ sleepMs: 1500 })));
    await Promise.all(ids.map((id) => waitForResolution(queue.queue, id)));
    const spans = await Promise.all(
      ids.map(async (id) => {
        const text = await readFile(join(markers, id), 'utf8');
        return { start: Number(/start (\d+)/.exec(text)![1]), end: Number(/end (\d+)/.exec(text)![1]) };
      }),
    );
    const lastStart = Math.max(...spans.map((s) => s.start));
    const firstEnd = Math.min(...spans.map((s) => s.end));
    expect(lastStart).toBeLessThan(firstEnd);
  });

  it('files in ./artifacts/public/ are downloadable with taskcluster.downloadArtifact', async () => {
    const taskId = await submit({
      files: { 'artifacts/public/result.json': '{"ok":true}', 'artifacts/private/secret.txt': 'shh' },
    });
    expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
    expect(await downloadText(queue.queue, taskId, 'public/result.json')).toBe('{"ok":true}');
    expect(await downloadText(queue.queue, taskId, 'private/secret.txt')).toBe('shh');
  });

  it('cancelTask during a run: every process of the task tree is gone within 2 s, and the run is not resolved by the worker', async () => {
    const marker = `${7000 + Math.floor(Math.random() * 999)}.5`;
    const taskId = await submit({ tree: marker, sleepMs: 60_000 });
    await until(
      async () => (await processesWith(marker)).length >= 3 || undefined,
      15_000,
      'task processes started',
    );
    await queue.queue.cancelTask(taskId);
    const cancelledAt = Date.now();
    await until(
      async () => (await processesWith(marker)).length === 0,
      2000,
      'every process of the task gone',
    );
    expect(Date.now() - cancelledAt).toBeLessThanOrEqual(2000);
    const status = await waitForResolution(queue.queue, taskId);
    expect(status).toMatchObject({ state: 'exception', reasonResolved: 'canceled' });
    // the log of a cancelled run is still uploaded (within the queue's 25-minute allowance)
    await until(
      async () =>
        (await downloadText(queue.queue, taskId, BACKING_LOG).catch(() => '')).includes('tree started') ||
        undefined,
      5000,
      'log uploaded',
    );
  });

  it('its debug log, after every test above, holds no credential: not its own, not those of its claims', () => {
    const log = worker.stderr();
    expect(log).toContain('"level":20'); // debug lines are there
    expect(log).not.toContain(queue.credentials.accessToken);
    expect(log).not.toMatch(/"accessToken"\s*:\s*"[^"]/);
    expect(log).not.toMatch(/"certificate"\s*:/);
  });
});

describe('exit code 4', () => {
  it('resolves the task, then the worker stops claiming and exits by itself (code 69)', async () => {
    const dir = await tempDir('tcw-e2e-fatal-');
    const queue = await startQueue(join(dir, 'queue'));
    const taskQueueId = 'tcw-e2e/fatal';
    try {
      const config = await writeConfig(
        dir,
        scriptConfig({ queue, markerDir: dir, workDir: join(dir, 'work'), taskQueueId }),
      );
      const worker = tcw(['start', '--config', config]);
      await worker.waitFor(/worker started/);
      const fatal = taskcluster.slugid();
      await queue.queue.createTask(
        fatal,
        taskDefinition(taskQueueId, { exitCode: 4, stderr: 'HSM unreachable' }),
      );
      expect(await worker.exited).toBe(69);
      const status = await waitForResolution(queue.queue, fatal);
      expect(status).toMatchObject({ state: 'exception', reasonResolved: 'internal-error' });
      expect(await downloadText(queue.queue, fatal, BACKING_LOG)).toContain('[worker:error] HSM unreachable');
      const next = taskcluster.slugid();
      await queue.queue.createTask(next, taskDefinition(taskQueueId, { exitCode: 0 }));
      await new Promise((r) => setTimeout(r, 500));
      expect((await queue.queue.status(next)).status.state).toBe('pending');
    } finally {
      queue.kill();
      await queue.exited;
      await cleanup(dir);
    }
  });
});

describe('signals while the worker starts', () => {
  let dir: string;
  let queue: QueueProc;
  const taskQueueId = 'tcw-e2e/slow-start';

  // A third-party plugin (installed next to the config) whose init takes a while: the window in which a signal
  // arrives while the worker starts. It writes what happens to it into markerDir.
  beforeAll(async () => {
    dir = await tempDir('tcw-e2e-slow-start-');
    queue = await startQueue(join(dir, 'queue'));
    const pluginDir = join(dir, 'node_modules', 'tcw-e2e-slow-start');
    await mkdir(pluginDir, { recursive: true });
    await writeFile(
      join(pluginDir, 'package.json'),
      JSON.stringify({ name: 'tcw-e2e-slow-start', version: '1.0.0', type: 'module', exports: './index.js' }),
    );
    await writeFile(
      join(pluginDir, 'index.js'),
      `import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
export default {
  specificationVersion: 'v1',
  kind: 'plugin',
  name: 'slow-start',
  coreRange: '^0.1.0',
  configSchema: {
    type: 'object',
    properties: { markerDir: { type: 'string' }, delayMs: { type: 'integer' } },
    required: ['markerDir', 'delayMs'],
    additionalProperties: false,
  },
  create: ({ markerDir, delayMs }) => ({
    specificationVersion: 'v1',
    name: 'slow-start',
    async init() {
      writeFileSync(join(markerDir, 'init-started'), '');
      await new Promise((r) => setTimeout(r, delayMs));
    },
    dispose() {
      writeFileSync(join(markerDir, 'disposed'), '');
    },
  }),
};
`,
    );
  });

  afterAll(async () => {
    await stopAll(queue);
    await cleanup(dir);
  });

  async function startSlow(
    name: string,
    delayMs: number,
    command: string[] = ['start'],
    env: NodeJS.ProcessEnv = {},
  ): Promise<{ worker: Proc; markers: string; work: string }> {
    const markers = join(dir, name);
    await mkdir(markers);
    const work = join(dir, `work-${name}`);
    const config = await writeConfig(
      dir,
      scriptConfig({
        queue,
        markerDir: markers,
        workDir: work,
        taskQueueId,
        extra: {
          plugins: { disabled: DISABLED_DEFAULTS, 'tcw-e2e-slow-start': { markerDir: markers, delayMs } },
        },
      }),
    );
    const worker = tcw([...command, '--config', config], { env });
    await until(
      async () => existsSync(join(markers, 'init-started')),
      20_000,
      'the slow plugin init started',
    );
    return { worker, markers, work };
  }

  it('SIGTERM: the worker finishes starting, claims nothing, disposes its plugins and exits 0', async () => {
    const taskId = await createTaskIn(queue, taskQueueId, { exitCode: 0 });
    const { worker, markers, work } = await startSlow('graceful', 1500);
    worker.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    expect(worker.stderr()).toContain('received SIGTERM while starting; stopping once started');
    expect(worker.stderr()).toContain('received SIGTERM while starting"'); // the stop reason, in the JSON log
    expect(existsSync(join(markers, 'disposed'))).toBe(true);
    expect(existsSync(join(work, 'worker.pid'))).toBe(false);
    // the pending task was left for another worker
    expect((await queue.queue.status(taskId)).status.runs[0]).toMatchObject({ state: 'pending' });
    await queue.queue.cancelTask(taskId);
  });

  it('a second signal while starting exits at once (75)', async () => {
    const { worker } = await startSlow('twice', 60_000);
    worker.kill('SIGTERM');
    await worker.waitFor(/stopping once started/);
    worker.kill('SIGINT');
    expect(await worker.exited).toBe(75);
    expect(worker.stderr()).toContain('received SIGINT again while starting; exiting now');
  });

  it('tcw run: SIGINT while starting creates no task, exits 2 and leaves no scratch folder', async () => {
    const file = join(dir, 'run.yml');
    await writeFile(file, stringify({ payload: { stdout: 'never' } }));
    const tmp = join(dir, 'tmp');
    await mkdir(tmp);
    const { worker: run, markers } = await startSlow('run', 1500, ['run', file], { TMPDIR: tmp });
    expect(await readdir(tmp)).toEqual([expect.stringMatching(/^tcw-run-/)]);
    run.kill('SIGINT');
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toContain('tcw run: interrupted (SIGINT) before the task was created; nothing ran');
    expect(run.stdout()).not.toContain('never');
    expect(existsSync(join(markers, 'disposed'))).toBe(true);
    expect(await readdir(tmp)).toEqual([]);
  });
});
