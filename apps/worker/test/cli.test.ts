// The tcw commands as an operator runs them: real child processes, real files, the real taskcluster-client.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  cleanup,
  type QueueProc,
  scriptConfig,
  startQueue,
  stopAll,
  tcw,
  tempDir,
  waitForResolution,
  writeConfig,
} from './helpers.js';

const SEED_000_EXAMPLE = `
engine: script
engines:
  script:
    command:
      - /usr/bin/bash
      - /home/jonasfj/worker-script.sh
    schema:
      # type object is required for the root of the schema
      type: object
      properties:
        binaryToSign: {type: 'string', format: 'uri'}
        verbose: {type: 'boolean'}
      required:
        - binaryToSign
plugins:
  disabled:
    - artifacts
    - env
    - tcproxy
    - interactive
`;

describe('tcw config check and tcw schema', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('tcw-cli-');
  });
  afterAll(() => cleanup(dir));

  it('loads the seed-000 example as written', async () => {
    const path = join(dir, 'seed.yml');
    await writeFile(path, SEED_000_EXAMPLE);
    const check = tcw(['config', 'check', path]);
    expect(await check.exited).toBe(0);
    expect(check.stdout()).toContain('ok (engine script');
    expect(check.stdout()).toContain('payload keys binaryToSign, verbose');
  });

  it('loads a third-party plugin installed next to the config, also an ESM-only one (exports: import only)', async () => {
    const pluginDir = join(dir, 'third', 'node_modules', '@acme', 'tcw-plugin-hello');
    await mkdir(pluginDir, { recursive: true });
    await writeFile(
      join(pluginDir, 'package.json'),
      JSON.stringify({
        name: '@acme/tcw-plugin-hello',
        version: '1.0.0',
        type: 'module',
        exports: { '.': { import: './index.js' } },
      }),
    );
    // a plugin provider written by hand (what definePlugin returns), adding a payload key
    await writeFile(
      join(pluginDir, 'index.js'),
      `export default {
  specificationVersion: 'v1',
  kind: 'plugin',
  name: 'hello',
  coreRange: '^0.1.0',
  configSchema: { type: 'object', properties: { greeting: { type: 'string' } }, additionalProperties: false },
  create: (config) => ({
    specificationVersion: 'v1',
    name: 'hello',
    payloadSchema: () => ({ type: 'object', properties: { hello: { type: 'string' } } }),
  }),
};
`,
    );
    const path = join(dir, 'third', 'worker.yml');
    await writeFile(path, `${SEED_000_EXAMPLE}\n  '@acme/tcw-plugin-hello': {greeting: hi}\n`);
    const schema = tcw(['schema', '--config', path]);
    expect(await schema.exited).toBe(0);
    expect(JSON.parse(schema.stdout()).properties).toHaveProperty('hello');
  });

  it('names every bad key by its path', async () => {
    const path = join(dir, 'bad.yml');
    await writeFile(
      path,
      stringify({
        engine: 'script',
        engines: { script: { command: 'not-a-list', schema: { type: 'array' }, colour: 'blue' } },
        worker: { capacity: 0, workerId: 'has spaces' },
        bogus: 1,
        plugins: { disabled: ['env', 'artifacts', 'logprefix', 'maxruntime', 'livelog'] },
      }),
    );
    const check = tcw(['config', 'check', path]);
    expect(await check.exited).toBe(64);
    const err = check.stderr();
    expect(err).toContain('bogus: unknown key');
    expect(err).toContain('worker.capacity: must be >= 1');
    expect(err).toContain('worker.workerId: must match pattern');
  });

  it('names bad engine options and a misspelt disabled plugin by their path', async () => {
    const path = join(dir, 'bad-engine.yml');
    await writeFile(
      path,
      stringify({
        engine: 'script',
        engines: { script: { command: 'not-a-list', schema: { type: 'array' }, colour: 'blue' } },
        plugins: { disabled: ['env', 'artifacts', 'logprefix', 'maxruntime', 'livelgo'] },
      }),
    );
    const check = tcw(['config', 'check', path]);
    expect(await check.exited).toBe(64);
    const err = check.stderr();
    expect(err).toContain('plugins.disabled[4]: unknown plugin livelgo; did you mean livelog?');
    expect(err).toContain('engines.script.command: must be array');
    expect(err).toContain('engines.script.schema.type: must be equal to constant');
    expect(err).toContain('engines.script.colour: unknown key');
  });

  it('resolves {$env} values and reports missing ones', async () => {
    const path = join(dir, 'env.yml');
    await writeFile(
      path,
      `${SEED_000_EXAMPLE}\nworker:\n  capacity: {$env: TCW_TEST_CAPACITY, type: number}\n`,
    );
    const ok = tcw(['config', 'check', path], { env: { TCW_TEST_CAPACITY: '3' } });
    expect(await ok.exited).toBe(0);
    const missing = tcw(['config', 'check', path], { env: { TCW_TEST_CAPACITY: '' } });
    // an empty variable is not a number
    expect(await missing.exited).toBe(64);
  });

  it('prints the composed payload schema', async () => {
    const path = join(dir, 'seed.yml');
    const schema = tcw(['schema', '--config', path]);
    expect(await schema.exited).toBe(0);
    const parsed = JSON.parse(schema.stdout());
    expect(parsed).toMatchObject({
      type: 'object',
      additionalProperties: false,
      required: ['binaryToSign'],
      properties: { binaryToSign: { type: 'string', format: 'uri' }, verbose: { type: 'boolean' } },
    });
  });

  it('refuses an unknown command and a missing config with usage errors', async () => {
    const unknown = tcw(['frobnicate']);
    expect(await unknown.exited).toBe(64);
    const none = tcw(['start'], { cwd: dir });
    expect(await none.exited).toBe(64);
    expect(none.stderr()).toContain('no config file');
  });
});

describe('tcw submit --follow and tcw run', () => {
  let dir: string;
  let queue: QueueProc;
  let worker: ReturnType<typeof tcw>;
  const taskQueueId = 'tcw-e2e/submit';

  beforeAll(async () => {
    dir = await tempDir('tcw-submit-');
    await mkdir(join(dir, 'markers'));
    queue = await startQueue(join(dir, 'queue'));
    const config = await writeConfig(
      dir,
      scriptConfig({ queue, markerDir: join(dir, 'markers'), workDir: join(dir, 'work'), taskQueueId }),
    );
    worker = tcw(['start', '--config', config]);
    await worker.waitFor(/worker started/);
  });
  afterAll(async () => {
    worker?.kill();
    await worker?.exited;
    queue?.kill();
    await queue?.exited;
    await cleanup(dir);
  });

  it('exits 64 when the queue refuses the task (403), 69 when it cannot be reached', async () => {
    const file = join(dir, 'refused.yml');
    await writeFile(file, stringify({ taskQueueId, payload: {} }));
    // no credentials: anonymous scopes cannot create tasks
    const refused = tcw(['submit', file], { env: { TASKCLUSTER_ROOT_URL: queue.rootUrl } });
    expect(await refused.exited).toBe(64);
    expect(refused.stderr()).toMatch(/createTask failed \(403\)/);
    // a port nobody listens on (taskcluster-client retries, then gives up)
    const unreachable = tcw(['submit', file], {
      env: { ...queue.env, TASKCLUSTER_ROOT_URL: 'http://127.0.0.1:9' },
    });
    expect(await unreachable.exited).toBe(69);
    expect(unreachable.stderr()).toMatch(/createTask failed/);
  });

  it.each([
    [0, 0, 'completed'],
    [1, 1, 'failed'],
    [2, 2, 'exception (malformed-payload)'],
  ])('exit %i: prints the taskId, streams the log and exits %i', async (exitCode, expected, words) => {
    const file = join(dir, `task-${exitCode}.yml`);
    await writeFile(
      file,
      stringify({ taskQueueId, payload: { exitCode, stdout: `hello from ${exitCode}` } }),
    );
    const submit = tcw(['submit', file, '--follow'], { env: queue.env });
    expect(await submit.exited).toBe(expected);
    const [taskId, ...log] = submit.stdout().split('\n');
    expect(taskId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(log.join('\n')).toContain(`hello from ${exitCode}`);
    expect(submit.stderr()).toContain(`task ${taskId} run 0: ${words}`);
  });

  it('without --follow, prints the taskId and leaves the task to the worker', async () => {
    const file = join(dir, 'plain.yml');
    await writeFile(file, stringify({ taskQueueId, payload: {} }));
    const submit = tcw(['submit', file], { env: queue.env });
    expect(await submit.exited).toBe(0);
    const taskId = submit.stdout().trim();
    expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
  });

  it('tells what is wrong with a bad task file or a refused task', async () => {
    const file = join(dir, 'bad.yml');
    await writeFile(file, 'payload: [unclosed');
    const bad = tcw(['submit', file], { env: queue.env });
    expect(await bad.exited).toBe(64);
    expect(bad.stderr()).toContain('cannot read task file');
    const noEnv = tcw(['submit', file], { env: { TASKCLUSTER_ROOT_URL: '' } });
    expect(await noEnv.exited).toBe(64);
    expect(noEnv.stderr()).toContain('TASKCLUSTER_ROOT_URL is not set');
  });

  it('tcw run: one task, no deployment; log on stdout, artifacts in --out, exit code of the task', async () => {
    const config = await writeConfig(
      join(dir, 'markers'),
      scriptConfig({ markerDir: join(dir, 'markers'), workDir: join(dir, 'unused') }),
    );
    const file = join(dir, 'run.yml');
    await writeFile(
      file,
      stringify({ payload: { stdout: 'ran locally', files: { 'artifacts/public/out.txt': 'made here' } } }),
    );
    const out = join(dir, 'out');
    const run = tcw(['run', file, '--config', config, '--out', out]);
    expect(await run.exited).toBe(0);
    expect(run.stdout()).toContain('ran locally');
    expect(await readFile(join(out, 'public/out.txt'), 'utf8')).toBe('made here');
    expect(await readFile(join(out, 'public/logs/live_backing.log'), 'utf8')).toContain('ran locally');

    const failing = join(dir, 'run-fail.yml');
    await writeFile(failing, stringify({ payload: { exitCode: 1 } }));
    const failed = tcw(['run', failing, '--config', config]);
    expect(await failed.exited).toBe(1);
    const refused = join(dir, 'run-refused.yml');
    await writeFile(refused, stringify({ payload: { nope: 1 } }));
    const exception = tcw(['run', refused, '--config', config]);
    expect(await exception.exited).toBe(2);
    expect(exception.stdout()).toContain('/nope: this payload key does not exist on this worker');
  });
});

describe('tcw start on the embedded queue, and signals', () => {
  it('prints the export lines, serves the queue, stops gracefully on SIGTERM (running task finishes)', async () => {
    const dir = await tempDir('tcw-embedded-');
    try {
      await mkdir(join(dir, 'markers'));
      const config = await writeConfig(dir, {
        ...scriptConfig({
          markerDir: join(dir, 'markers'),
          workDir: join(dir, 'work'),
          taskQueueId: 'tcw/local',
        }),
        localQueue: { stateDir: join(dir, 'queue'), port: 0 },
      });
      const worker = tcw(['start', '--config', config]);
      await worker.waitFor(/TASKCLUSTER_ACCESS_TOKEN=.*\n/, 'stdout');
      await worker.waitFor(/worker started/);
      const envFile = tcw(['env', '--config', config]);
      expect(await envFile.exited).toBe(0);
      expect(envFile.stdout()).toBe(worker.stdout());
      const { parseExports } = await import('./helpers.js');
      const env = parseExports(worker.stdout());
      const file = join(dir, 'slow.yml');
      await writeFile(file, stringify({ payload: { sleepMs: 1500, stdout: 'slow task' } }));
      const submit = tcw(['submit', file], { env });
      expect(await submit.exited).toBe(0);
      const taskId = submit.stdout().trim();
      await worker.waitFor(new RegExp(`claimed task.*${taskId}|${taskId}.*claimed task`));
      worker.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
      expect(worker.stderr()).toContain('stopping gracefully');
      // restart on the same state: the task was completed before the worker stopped
      const again = tcw(['queue', '--state-dir', join(dir, 'queue'), '--port', '0']);
      await again.waitFor(/TASKCLUSTER_ACCESS_TOKEN=.*\n/, 'stdout');
      const taskcluster = (await import('taskcluster-client')).default;
      const e = parseExports(again.stdout());
      const q = new taskcluster.Queue({
        rootUrl: e.TASKCLUSTER_ROOT_URL!,
        credentials: { clientId: e.TASKCLUSTER_CLIENT_ID!, accessToken: e.TASKCLUSTER_ACCESS_TOKEN! },
      });
      expect((await q.status(taskId)).status.state).toBe('completed');
      again.kill();
      await again.exited;
    } finally {
      await cleanup(dir);
    }
  });

  it('a second tcw start on the same state directory or work folder is refused, naming it (exit 70)', async () => {
    const dir = await tempDir('tcw-twice-');
    let first: ReturnType<typeof tcw> | undefined;
    let later: ReturnType<typeof tcw> | undefined;
    try {
      await mkdir(join(dir, 'markers'));
      const base = scriptConfig({ markerDir: join(dir, 'markers'), workDir: join(dir, 'work') });
      const config = await writeConfig(dir, {
        ...base,
        localQueue: { stateDir: join(dir, 'queue'), port: 0 },
      });
      first = tcw(['start', '--config', config]);
      await first.waitFor(/worker started/);
      // the same config: the embedded queue's state is taken
      const same = tcw(['start', '--config', config]);
      expect(await same.exited).toBe(70);
      expect(same.stderr()).toMatch(/queue\.sqlite is in use by another local queue/);
      // another queue, the same work folder: the first worker's task folders would be at risk
      await mkdir(join(dir, 'other'));
      const otherConfig = await writeConfig(join(dir, 'other'), {
        ...base,
        localQueue: { stateDir: join(dir, 'other', 'queue'), port: 0 },
      });
      const shared = tcw(['start', '--config', otherConfig]);
      expect(await shared.exited).toBe(70);
      expect(shared.stderr()).toMatch(
        new RegExp(`work folder .*work is in use by another worker \\(pid ${first.child.pid}`),
      );
      // the first one is unharmed, and once it stopped the folder is free
      expect(first.child.exitCode).toBe(null);
      first.kill('SIGTERM');
      expect(await first.exited).toBe(0);
      later = tcw(['start', '--config', otherConfig]);
      await later.waitFor(/worker started/);
    } finally {
      await stopAll(first, later);
      await cleanup(dir);
    }
  });

  for (const [mode, extra, inProcess] of [
    ['in-process (default)', {}, true],
    ['over HTTP (localQueue.inProcess: false)', { inProcess: false }, false],
    ['in-process on its own thread (localQueue.thread: true)', { thread: true }, true],
  ] as const) {
    it(`reaches the embedded queue ${mode}: completed, failed, cancelled, artifacts and logs`, async () => {
      const dir = await tempDir('tcw-inprocess-');
      let worker: ReturnType<typeof tcw> | undefined;
      try {
        await mkdir(join(dir, 'markers'));
        const taskQueueId = 'tcw/inprocess';
        const config = await writeConfig(dir, {
          ...scriptConfig({ markerDir: join(dir, 'markers'), workDir: join(dir, 'work'), taskQueueId }),
          localQueue: { stateDir: join(dir, 'queue'), port: 0, ...extra },
        });
        worker = tcw(['start', '--config', config]);
        await worker.waitFor(/TASKCLUSTER_ACCESS_TOKEN=.*\n/, 'stdout');
        await worker.waitFor(/worker started/);
        const { parseExports, taskDefinition, downloadText } = await import('./helpers.js');
        const taskcluster = (await import('taskcluster-client')).default;
        const e = parseExports(worker.stdout());
        const q = new taskcluster.Queue({
          rootUrl: e.TASKCLUSTER_ROOT_URL!,
          credentials: { clientId: e.TASKCLUSTER_CLIENT_ID!, accessToken: e.TASKCLUSTER_ACCESS_TOKEN! },
        });
        const create = async (payload: Record<string, unknown>) => {
          const taskId = taskcluster.slugid();
          await q.createTask(taskId, taskDefinition(taskQueueId, payload));
          return taskId;
        };
        const ok = await create({ stdout: 'in-process ok', files: { 'artifacts/public/out.txt': 'result' } });
        const failed = await create({ stdout: 'about to fail', exitCode: 1 });
        expect((await waitForResolution(q, ok)).state).toBe('completed');
        expect((await waitForResolution(q, failed)).state).toBe('failed');
        expect(await downloadText(q, ok, 'public/out.txt')).toBe('result');
        expect(await downloadText(q, ok, 'public/logs/live_backing.log')).toContain('in-process ok');
        expect(await downloadText(q, failed, 'public/logs/live_backing.log')).toContain('about to fail');
        const slow = await create({ sleepMs: 60_000, stdout: 'long' });
        await worker.waitFor(new RegExp(`claimed task.*${slow}|${slow}.*claimed task`));
        await q.cancelTask(slow);
        const cancelled = await waitForResolution(q, slow, 10_000);
        expect(cancelled).toMatchObject({ state: 'exception', reasonResolved: 'canceled' });
        await worker.waitFor(new RegExp(`${slow}.*"timings"|"timings".*${slow}`));
        worker.kill('SIGTERM');
        expect(await worker.exited).toBe(0);
        // the queue logs every HTTP request at debug level: the worker's own calls show up only over HTTP
        const workerCalls = worker
          .stderr()
          .split('\n')
          .filter(
            (l) =>
              /"msg":"request"/.test(l) && /"route":"(claimWork|reportCompleted|createArtifact)"/.test(l),
          );
        if (inProcess) expect(workerCalls).toEqual([]);
        else expect(workerCalls.length).toBeGreaterThan(3);
      } finally {
        await stopAll(worker);
        await cleanup(dir);
      }
    });
  }

  it('a second SIGTERM stops now: the running task is resolved worker-shutdown', async () => {
    const dir = await tempDir('tcw-stopnow-');
    const queue = await startQueue(join(dir, 'queue'));
    try {
      await mkdir(join(dir, 'markers'));
      const taskQueueId = 'tcw-e2e/stopnow';
      const config = await writeConfig(
        dir,
        scriptConfig({ queue, markerDir: join(dir, 'markers'), workDir: join(dir, 'work'), taskQueueId }),
      );
      const worker = tcw(['start', '--config', config]);
      await worker.waitFor(/worker started/);
      const { taskDefinition } = await import('./helpers.js');
      const taskcluster = (await import('taskcluster-client')).default;
      const taskId = taskcluster.slugid();
      await queue.queue.createTask(taskId, taskDefinition(taskQueueId, { sleepMs: 60_000 }));
      await worker.waitFor(/claimed task/);
      worker.kill('SIGTERM');
      await worker.waitFor(/stopping gracefully/);
      worker.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
      const status = (await queue.queue.status(taskId)).status;
      expect(status.runs[0]).toMatchObject({ state: 'exception', reasonResolved: 'worker-shutdown' });
      expect(status.runs[1]).toMatchObject({ state: 'pending', reasonCreated: 'retry' });
    } finally {
      queue.kill();
      await queue.exited;
      await cleanup(dir);
    }
  });
});
