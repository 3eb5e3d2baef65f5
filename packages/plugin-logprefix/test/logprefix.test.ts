import { CORE_VERSION, ConfigError, createAjv, type PluginV1 } from '@tcw/core';
import { runPluginTask, startTestWorker } from '@tcw/testing';
import { describe, expect, it } from 'vitest';
import provider, { logprefix } from '../src/index.js';

/** The worker lines of a log without their `[taskcluster <time>] ` prefix. */
function workerLines(log: string): string[] {
  return log
    .split('\n')
    .filter((l) => l.startsWith('[taskcluster'))
    .map((l) => l.replace(/^\[taskcluster[^\]]*\] /, ''));
}

describe('@tcw/plugin-logprefix', () => {
  it('prints identity, core version and configured values at the top of the task log', async () => {
    const result = await runPluginTask({
      plugins: [logprefix({ values: { region: 'eu-west-1', imageVersion: 42, spot: true } })],
      payload: { mock: { log: 'task output' } },
    });
    expect(result.resolution).toBe('completed');
    const lines = workerLines(result.log);
    // core's own first line, then ours
    expect(lines[0]).toMatch(/^Task .* run 0 on test-group\/test-worker/);
    expect(lines.slice(1, 11)).toEqual([
      `taskId:          ${result.taskId}`,
      'runId:           0',
      'workerGroup:     test-group',
      'workerId:        test-worker',
      'taskQueueId:     tcw-test/fake',
      `tcwCoreVersion:  ${CORE_VERSION}`,
      'tasksSinceStart: 1',
      'region:          eu-west-1',
      'imageVersion:    42',
      'spot:            true',
    ]);
    expect(result.log.indexOf('spot:')).toBeLessThan(result.log.indexOf('task output'));
    expect(result.hooks.filter((h) => h.plugin === 'logprefix').map((h) => h.hook)[0]).toBe('taskPlugin');
  });

  it('comes before what other plugins write, even when configured after them', async () => {
    const chatty: PluginV1 = {
      specificationVersion: 'v1',
      name: 'chatty',
      taskPlugin: ({ log }) => {
        log.info('chatty was here');
        return { prepare: ({ log: l }) => l.info('chatty prepares') };
      },
    };
    const result = await runPluginTask({ plugins: [chatty, logprefix()], payload: { mock: {} } });
    const lines = workerLines(result.log);
    expect(lines.indexOf('chatty was here')).toBeGreaterThan(lines.findIndex((l) => l.startsWith('taskId:')));
    expect(lines.findIndex((l) => l.startsWith('tasksSinceStart:'))).toBeLessThan(
      lines.indexOf('chatty was here'),
    );
  });

  it('counts the tasks this worker has run', async () => {
    const tw = await startTestWorker({ plugins: [logprefix()] });
    try {
      const first = await tw.run({ mock: {} });
      const second = await tw.run({ mock: {} });
      expect(workerLines(first.log)).toContain('tasksSinceStart: 1');
      expect(workerLines(second.log)).toContain('tasksSinceStart: 2');
    } finally {
      await tw.stop();
    }
  });

  it('prints on failed tasks too', async () => {
    const result = await runPluginTask({ plugins: [logprefix()], payload: { mock: { exitCode: 1 } } });
    expect(result.resolution).toBe('failed');
    expect(workerLines(result.log)[1]).toBe(`taskId:          ${result.taskId}`);
  });

  it('attributes its own failure to the plugin', async () => {
    const unprintable = {
      toString() {
        throw new Error('cannot print this value');
      },
    } as unknown as string;
    const result = await runPluginTask({
      plugins: [logprefix({ values: { odd: unprintable } })],
      payload: { mock: {} },
    });
    expect(result.resolution).toBe('exception/internal-error');
    expect(result.log).toContain('plugin logprefix failed in taskPlugin: cannot print this value');
  });

  it('refuses a bad config, naming the key', () => {
    expect(() => logprefix({ values: { taskId: 'x' } })).toThrow(ConfigError);
    expect(() => logprefix({ values: { taskId: 'x' } })).toThrow('plugins.logprefix.values.taskId');
    expect(() => logprefix({ values: { 'a b': 'x' } })).toThrow('plugins.logprefix.values.a b');
    expect(() => logprefix({ values: { a: 'two\nlines' } })).toThrow('must fit on one line');
  });

  it('exports a provider the app loads as plugins.logprefix', async () => {
    expect(provider).toMatchObject({ kind: 'plugin', name: 'logprefix', coreRange: '^0.1.0' });
    const validate = createAjv().compile(provider.configSchema);
    expect(validate({ values: { a: 'b', n: 1, t: false } })).toBe(true);
    expect(validate({ values: { a: { nested: 1 } } })).toBe(false);
    expect(validate({ prefix: 'x' })).toBe(false);
    expect((await provider.create({})).name).toBe('logprefix');
  });
});
