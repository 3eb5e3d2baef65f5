import { ConfigError, createAjv, type PluginV1 } from '@tcw/core';
import { createMockEngine, FakeQueue, runPluginTask } from '@tcw/testing';
import { describe, expect, it } from 'vitest';
import provider, { env } from '../src/index.js';

const ALL = [
  'TASK_ID',
  'RUN_ID',
  'TASK_GROUP_ID',
  'TASKCLUSTER_ROOT_URL',
  'TASKCLUSTER_WORKER_GROUP',
  'TASKCLUSTER_WORKER_ID',
  'TASKCLUSTER_TASK_QUEUE_ID',
];

/** Parses the `NAME=value` lines the mock engine prints for `mock.env`. */
function printed(log: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of log.split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1] as string] = m[2] as string;
  }
  return out;
}

describe('@tcw/plugin-env', () => {
  it("sets the run's identity for every task", async () => {
    const queue = new FakeQueue({ longPollMs: 20 });
    const rootUrl = queue.rootUrl;
    const result = await runPluginTask({
      queue,
      plugins: [env()],
      payload: { mock: { env: ALL } },
      task: { taskGroupId: 'group-of-tasks' },
    });
    expect(result.resolution).toBe('completed');
    expect(printed(result.log)).toEqual({
      TASK_ID: result.taskId,
      RUN_ID: '0',
      TASK_GROUP_ID: 'group-of-tasks',
      TASKCLUSTER_ROOT_URL: rootUrl,
      TASKCLUSTER_WORKER_GROUP: 'test-group',
      TASKCLUSTER_WORKER_ID: 'test-worker',
      TASKCLUSTER_TASK_QUEUE_ID: 'tcw-test/fake',
    });
    expect(result.hooks.filter((h) => h.plugin === 'env').map((h) => h.hook)).toEqual([
      'taskPlugin',
      'prepare',
      'buildSandbox',
      'started',
      'stopped',
      'finished',
      'dispose',
    ]);
  });

  it('applies worker < config extra < payload env', async () => {
    const result = await runPluginTask({
      plugins: [env({ extra: { FROM_CONFIG: 'c', BOTH: 'config', TASKCLUSTER_WORKER_ID: 'configured-id' } })],
      payload: {
        mock: { env: ['FROM_CONFIG', 'BOTH', 'TASKCLUSTER_WORKER_ID', 'TASK_GROUP_ID', 'ONLY_TASK'] },
        env: { BOTH: 'payload', TASK_GROUP_ID: 'task-says', ONLY_TASK: 'x y=z' },
      },
    });
    expect(result.resolution).toBe('completed');
    expect(printed(result.log)).toEqual({
      FROM_CONFIG: 'c',
      BOTH: 'payload',
      TASKCLUSTER_WORKER_ID: 'configured-id',
      TASK_GROUP_ID: 'task-says',
      ONLY_TASK: 'x y=z',
    });
  });

  it('refuses a payload that sets TASK_ID or RUN_ID, naming each pointer, before any sandbox exists', async () => {
    const engine = createMockEngine();
    const result = await runPluginTask({
      engine,
      plugins: [env()],
      payload: { mock: {}, env: { TASK_ID: 'mine', RUN_ID: '7', OK: 'fine' } },
    });
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('plugin env failed in taskPlugin');
    expect(result.log).toContain('/env/TASK_ID: TASK_ID is set by the worker');
    expect(result.log).toContain('/env/RUN_ID: RUN_ID is set by the worker');
    expect(engine.sandboxes).toHaveLength(0);
  });

  it('validates the env payload key against its schema', async () => {
    const badName = await runPluginTask({ plugins: [env()], payload: { mock: {}, env: { '1BAD': 'x' } } });
    expect(badName.resolution).toBe('exception/malformed-payload');
    expect(badName.log).toContain('/env/1BAD: is not a valid name here: it must match pattern');
    const notString = await runPluginTask({ plugins: [env()], payload: { mock: {}, env: { N: 5 } } });
    expect(notString.resolution).toBe('exception/malformed-payload');
    expect(notString.log).toContain('/env/N: must be string');
    const notObject = await runPluginTask({ plugins: [env()], payload: { mock: {}, env: ['A=b'] } });
    expect(notObject.log).toContain('/env: must be object');
  });

  it('has no env key on an engine without the env capability, and sets nothing there', async () => {
    const engine = createMockEngine({ capabilities: { env: false } });
    const refused = await runPluginTask({ engine, plugins: [env()], payload: { mock: {}, env: { A: 'b' } } });
    expect(refused.resolution).toBe('exception/malformed-payload');
    expect(refused.log).toContain('/env: this payload key does not exist on this worker (plugin:env:');
    expect(refused.log).toContain('needs engine capability env');

    const plain = await runPluginTask({
      engine,
      plugins: [env({ extra: { A: 'b' } })],
      payload: { mock: { log: 'hello' } },
    });
    expect(plain.resolution).toBe('completed');
    expect(engine.sandboxes.at(-1)?.env).toEqual({});
  });

  it("attributes a builder's refusal to the env plugin", async () => {
    // Another plugin sets FOO first; the mock builder refuses a variable set twice.
    const first: PluginV1 = {
      specificationVersion: 'v1',
      name: 'first',
      taskPlugin: () => ({ buildSandbox: ({ builder }) => builder.setEnv('FOO', 'first') }),
    };
    const result = await runPluginTask({
      plugins: [first, env({ extra: { FOO: 'env' } })],
      payload: { mock: {} },
    });
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('plugin env failed in buildSandbox: environment variable FOO is set twice');
    expect(result.hooks.filter((h) => h.plugin === 'env').map((h) => h.hook)).toEqual([
      'taskPlugin',
      'prepare',
      'buildSandbox',
      'exception',
      'dispose',
    ]);
  });

  it('refuses a bad config, naming the key', () => {
    expect(() => env({ extra: { 'not-a-name': 'x' } })).toThrow(ConfigError);
    expect(() => env({ extra: { 'not-a-name': 'x' } })).toThrow('plugins.env.extra.not-a-name');
    expect(() => env({ extra: { TASK_ID: 'x' } })).toThrow('plugins.env.extra.TASK_ID');
  });

  it('exports a provider the app loads as plugins.env', async () => {
    expect(provider).toMatchObject({ kind: 'plugin', name: 'env', coreRange: '^0.1.0' });
    const validate = createAjv().compile(provider.configSchema);
    expect(validate({ extra: { A: 'b' } })).toBe(true);
    expect(validate({ extra: { A: 1 } })).toBe(false);
    expect(validate({ other: true })).toBe(false);
    expect(validate({})).toBe(true);
    const plugin = await provider.create({});
    expect(plugin.name).toBe('env');
  });
});
