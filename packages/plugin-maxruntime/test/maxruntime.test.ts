import { ConfigError, createAjv, type PluginV1 } from '@tcw/core';
import { createMockEngine, runPluginTask, startTestWorker } from '@tcw/testing';
import { describe, expect, it } from 'vitest';
import provider, { maxruntime } from '../src/index.js';

// The mock engine stands in for a real process here: these tests are about the plugin's decisions (when to stop,
// with which grace, which resolution); real signals are covered by the engines' conformance suites and by the
// end-to-end tests through `tcw start`.

describe('@tcw/plugin-maxruntime', () => {
  it('lets a task that finishes in time complete, and says what its limit was', async () => {
    const engine = createMockEngine();
    const result = await runPluginTask({
      engine,
      plugins: [maxruntime({ maxRunTime: 3600 })],
      payload: { mock: { log: 'quick' }, maxRunTime: 60 },
    });
    expect(result.resolution).toBe('completed');
    expect(result.log).toContain('maxRunTime: 60 s');
    expect(result.log).not.toContain('exceeded');
    expect(engine.sandboxes[0]?.aborts).toEqual([]);
    expect(result.hooks.filter((h) => h.plugin === 'maxruntime').map((h) => h.hook)).toEqual([
      'taskPlugin',
      'prepare',
      'buildSandbox',
      'started',
      'stopped',
      'finished',
      'dispose',
    ]);
  });

  it('stops a task that runs too long (SIGTERM, then the kill after the grace) and fails it', async () => {
    const engine = createMockEngine();
    const result = await runPluginTask({
      engine,
      plugins: [maxruntime({ maxRunTime: 3600, gracePeriod: 0.2 })],
      // ignores the polite signal, so only the kill after the grace period ends it
      payload: { mock: { log: 'working', delayMs: 120_000, ignoreTerm: true }, maxRunTime: 1 },
    });
    expect(result.resolution).toBe('failed');
    expect(result.log).toContain(
      'maxRunTime exceeded: the task ran for its maximum run time of 1 s; it is sent SIGTERM',
    );
    expect(result.log).toContain('killed after 0.2 s if it is still running. The task fails.');
    expect(result.log).toMatch(/=== Task Finished === failure/);
    expect(engine.sandboxes[0]?.aborts).toEqual([{ graceMs: 200 }]);
    // the normal path went on: stopped and finished ran, not exception
    const hooks = result.hooks.filter((h) => h.plugin === 'maxruntime').map((h) => h.hook);
    expect(hooks).toContain('stopped');
    expect(hooks).toContain('finished');
    expect(hooks).not.toContain('exception');
  });

  it("applies the config's ceiling to a task that sets no maxRunTime", async () => {
    const result = await runPluginTask({
      plugins: [maxruntime({ maxRunTime: 1, gracePeriod: 0 })],
      payload: { mock: { delayMs: 120_000 } },
    });
    expect(result.resolution).toBe('failed');
    expect(result.log).toContain('maxRunTime: 1 s');
    expect(result.log).toContain('maximum run time of 1 s; it is killed now');
  });

  it('kills at once on an engine that cannot stop a task gracefully, and says so', async () => {
    const engine = createMockEngine({ capabilities: { gracefulAbort: false } });
    const result = await runPluginTask({
      engine,
      plugins: [maxruntime({ gracePeriod: 30 })],
      payload: { mock: { delayMs: 120_000 }, maxRunTime: 1 },
    });
    expect(result.resolution).toBe('failed');
    expect(result.log).toContain('it is killed now (this engine cannot stop a task gracefully)');
  });

  it('fails the task, not the worker: the next task runs normally', async () => {
    const tw = await startTestWorker({ plugins: [maxruntime({ gracePeriod: 0 })] });
    try {
      const slow = await tw.run({ mock: { delayMs: 120_000 }, maxRunTime: 1 });
      const fast = await tw.run({ mock: {}, maxRunTime: 1 });
      expect(slow.resolution).toBe('failed');
      expect(fast.resolution).toBe('completed');
      expect(tw.worker.stopping).toBe(false);
    } finally {
      await tw.stop();
    }
  });

  it('does not count the time after the task has ended (slow stopped hooks of other plugins)', async () => {
    // A plugin whose `stopped` hook outlasts maxRunTime, configured before maxruntime so it runs first.
    const slowUpload: PluginV1 = {
      specificationVersion: 'v1',
      name: 'slow-upload',
      taskPlugin: () => ({
        stopped: () => new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 1500)),
      }),
    };
    const result = await runPluginTask({
      plugins: [slowUpload, maxruntime()],
      payload: { mock: {}, maxRunTime: 1 },
    });
    expect(result.resolution).toBe('completed');
    expect(result.log).not.toContain('exceeded');
  });

  it('validates maxRunTime against the ceiling', async () => {
    const plugins = () => [maxruntime({ maxRunTime: 5 })];
    const tooLong = await runPluginTask({ plugins: plugins(), payload: { mock: {}, maxRunTime: 6 } });
    expect(tooLong.resolution).toBe('exception/malformed-payload');
    expect(tooLong.log).toContain('/maxRunTime: must be <= 5');
    const zero = await runPluginTask({ plugins: plugins(), payload: { mock: {}, maxRunTime: 0 } });
    expect(zero.log).toContain('/maxRunTime: must be >= 1');
    const fraction = await runPluginTask({ plugins: plugins(), payload: { mock: {}, maxRunTime: 1.5 } });
    expect(fraction.log).toContain('/maxRunTime: must be integer');
  });

  it('perTaskLimit: require makes the key required', async () => {
    const result = await runPluginTask({
      plugins: [maxruntime({ perTaskLimit: 'require' })],
      payload: { mock: {} },
    });
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('/maxRunTime: is required');
  });

  it('perTaskLimit: forbid removes the key and says why', async () => {
    const plugin = maxruntime({ perTaskLimit: 'forbid', maxRunTime: 1, gracePeriod: 0 });
    const refused = await runPluginTask({ plugins: [plugin], payload: { mock: {}, maxRunTime: 10 } });
    expect(refused.resolution).toBe('exception/malformed-payload');
    expect(refused.log).toContain(
      '/maxRunTime: this payload key does not exist on this worker (plugin:maxruntime: tasks cannot set their own maximum run time on this worker (plugins.maxruntime.perTaskLimit is forbid)',
    );
    // the ceiling still applies
    const slow = await runPluginTask({
      plugins: [maxruntime({ perTaskLimit: 'forbid', maxRunTime: 1, gracePeriod: 0 })],
      payload: { mock: { delayMs: 120_000 } },
    });
    expect(slow.resolution).toBe('failed');
  });

  it('a cancelled task is stopped by the worker, not failed by maxruntime', async () => {
    const engine = createMockEngine();
    const tw = await startTestWorker({ engine, plugins: [maxruntime({ gracePeriod: 0 })] });
    try {
      const started = new Promise<void>((resolve) => {
        const onEnd = (e: { hook: string }) => {
          if (e.hook !== 'started') return;
          tw.worker.events.off('hook-end', onEnd);
          resolve();
        };
        tw.worker.events.on('hook-end', onEnd);
      });
      const resolved = new Promise<unknown>((resolve) =>
        tw.worker.events.once('task-resolved', (e) => resolve(e.resolution)),
      );
      const taskId = tw.submit({ mock: { delayMs: 120_000 }, maxRunTime: 1 });
      await started;
      tw.queue.cancelTask(taskId);
      expect(await resolved).toBeUndefined();
      expect((await tw.result(taskId)).resolution).toBe('exception/canceled');
      // one abort, with the worker's grace (200 ms in the test worker), not maxruntime's (0)
      expect(engine.sandboxes[0]?.aborts).toEqual([{ graceMs: 200 }]);
    } finally {
      await tw.stop();
    }
  });

  it('refuses a bad config, naming the key', () => {
    expect(() => maxruntime({ maxRunTime: 0 })).toThrow(ConfigError);
    expect(() => maxruntime({ maxRunTime: 1.5 })).toThrow('plugins.maxruntime.maxRunTime');
    expect(() => maxruntime({ perTaskLimit: 'sometimes' as 'allow' })).toThrow(
      'plugins.maxruntime.perTaskLimit',
    );
    expect(() => maxruntime({ gracePeriod: -1 })).toThrow('plugins.maxruntime.gracePeriod');
  });

  it('exports a provider the app loads as plugins.maxruntime', async () => {
    expect(provider).toMatchObject({ kind: 'plugin', name: 'maxruntime', coreRange: '^0.1.0' });
    const validate = createAjv().compile(provider.configSchema);
    expect(validate({ maxRunTime: 7200, perTaskLimit: 'require', gracePeriod: 30 })).toBe(true);
    expect(validate({ perTaskLimit: 'sometimes' })).toBe(false);
    expect(validate({ maxRunTime: '1h' })).toBe(false);
    expect(validate({ max: 1 })).toBe(false);
    expect((await provider.create({})).name).toBe('maxruntime');
  });
});
