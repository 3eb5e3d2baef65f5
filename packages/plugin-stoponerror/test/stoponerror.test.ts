import { createAjv, type PluginV1 } from '@tcw/core';
import { FakeQueue, startTestWorker } from '@tcw/testing';
import { describe, expect, it } from 'vitest';
import provider, { stoponerror } from '../src/index.js';

const brokenPrepare: PluginV1 = {
  specificationVersion: 'v1',
  name: 'broken',
  taskPlugin: ({ payload }) =>
    payload.breakPrepare
      ? {
          prepare: () => {
            throw new Error('disk vanished');
          },
        }
      : undefined,
  payloadSchema: () => ({ properties: { breakPrepare: { type: 'boolean' } } }),
};

describe('@tcw/plugin-stoponerror', () => {
  it('stops the worker gracefully after a task resolves exception/internal-error', async () => {
    const tw = await startTestWorker({ plugins: [stoponerror()] });
    const result = await tw.run({ mock: { error: 'internal-error' } });
    expect(result.resolution).toBe('exception/internal-error');
    const exit = await tw.exited;
    // a failure stop: reported as fatal, so the tcw process exits non-zero and a supervisor restarts it
    expect(exit).toMatchObject({ mode: 'graceful', fatal: true, tasksRun: 1 });
    expect(exit.reason).toBe(
      `stoponerror: internal error in task ${result.taskId}: the mock task reports an internal error`,
    );
    await tw.queue.close();
  });

  it("stops after a plugin hook's unexpected error too, naming the plugin", async () => {
    const tw = await startTestWorker({ plugins: [brokenPrepare, stoponerror()] });
    const result = await tw.run({ mock: {}, breakPrepare: true });
    expect(result.resolution).toBe('exception/internal-error');
    expect(result.log).toContain('plugin broken failed in prepare: disk vanished');
    const exit = await tw.exited;
    expect(exit.reason).toContain('plugin broken failed in prepare: disk vanished');
    await tw.queue.close();
  });

  it('lets running tasks finish (graceful), and claims nothing more', async () => {
    const tw = await startTestWorker({ plugins: [stoponerror()], capacity: 2 });
    const slow = tw.submit({ mock: { delayMs: 400, log: 'still here' } });
    const broken = await tw.run({ mock: { error: 'internal-error' } });
    expect(broken.resolution).toBe('exception/internal-error');
    const later = tw.submit({ mock: {} });
    const exit = await tw.exited;
    expect((await tw.result(slow)).resolution).toBe('completed');
    expect(tw.queue.statusOf(later).state).toBe('pending');
    expect(exit.mode).toBe('graceful');
    await tw.queue.close();
  });

  it("keeps going after the task's own failures and malformed payloads", async () => {
    const tw = await startTestWorker({ plugins: [stoponerror()] });
    try {
      expect((await tw.run({ mock: { exitCode: 1 } })).resolution).toBe('failed');
      expect((await tw.run({ mock: { error: 'malformed-payload' } })).resolution).toBe(
        'exception/malformed-payload',
      );
      expect((await tw.run({ unknownKey: 1 })).resolution).toBe('exception/malformed-payload');
      expect((await tw.run({ mock: {} })).resolution).toBe('completed');
      expect(tw.worker.stopping).toBe(false);
    } finally {
      await tw.stop();
    }
  });

  it('leaves fatal errors to core (which stops the worker with its own reason)', async () => {
    const tw = await startTestWorker({ plugins: [stoponerror()] });
    await tw.run({ mock: { error: 'fatal' } });
    const exit = await tw.exited;
    expect(exit.fatal).toBe(true);
    expect(exit.reason).toMatch(/^fatal error in task/);
    await tw.queue.close();
  });

  it('ignores a failed claimWork unless includeWorkerErrors is set', async () => {
    const quiet = new FakeQueue({ longPollMs: 20 });
    quiet.failNext('claimWork', 500);
    const tw = await startTestWorker({ queue: quiet, plugins: [stoponerror()] });
    try {
      // the loop retried the claim and still runs tasks
      expect((await tw.run({ mock: {} })).resolution).toBe('completed');
      expect(tw.worker.stopping).toBe(false);
    } finally {
      await tw.stop();
    }

    const strict = new FakeQueue({ longPollMs: 20 });
    strict.failNext('claimWork', 500);
    const tw2 = await startTestWorker({
      queue: strict,
      plugins: [stoponerror({ includeWorkerErrors: true })],
    });
    const exit = await tw2.exited;
    expect(exit.reason).toMatch(/^stoponerror: internal error in the worker loop: claimWork: 500/);
    expect(exit.tasksRun).toBe(0);
    await strict.close();
  });

  it('exports a provider the app loads as plugins.stoponerror', async () => {
    expect(provider).toMatchObject({ kind: 'plugin', name: 'stoponerror', coreRange: '^0.1.0' });
    const validate = createAjv().compile(provider.configSchema);
    expect(validate({})).toBe(true);
    expect(validate({ includeWorkerErrors: true })).toBe(true);
    expect(validate({ includeWorkerErrors: 'yes' })).toBe(false);
    expect(validate({ other: 1 })).toBe(false);
    expect((await provider.create({})).name).toBe('stoponerror');
  });
});
