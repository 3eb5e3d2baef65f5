import { ConfigError, createAjv, type Logger, type PluginV1 } from '@tcw/core';
import { FakeQueue, startTestWorker } from '@tcw/testing';
import { describe, expect, it } from 'vitest';
import provider, { FORCE_EXIT_CODE, watchdog } from '../src/index.js';

interface Entry {
  level: string;
  fields: Record<string, unknown>;
  message: string | undefined;
}
function recordingLogger(entries: Entry[]): Logger {
  const make = (bindings: object): Logger => {
    const log =
      (level: string) =>
      (fields: object | string, message?: string): void => {
        if (typeof fields === 'string') entries.push({ level, fields: { ...bindings }, message: fields });
        else entries.push({ level, fields: { ...bindings, ...fields }, message });
      };
    return {
      debug: log('debug'),
      info: log('info'),
      warn: log('warn'),
      error: log('error'),
      child: (more) => make({ ...bindings, ...more }),
    } as Logger;
  };
  return make({});
}

/** A plugin whose `prepare` hangs until the task is aborted (or forever, with `ignoreAbort`). */
function hanging(ignoreAbort = false): PluginV1 {
  return {
    specificationVersion: 'v1',
    name: 'hanging',
    taskPlugin: () => ({
      prepare: ({ signal }) =>
        new Promise<void>((_, reject) => {
          if (!ignoreAbort) signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        }),
    }),
  };
}

const never = () => {
  throw new Error('the watchdog must not end the process here');
};

describe('@tcw/plugin-watchdog', () => {
  it('names a stuck hook and stops the worker now; the task goes back to the queue', async () => {
    const entries: Entry[] = [];
    const tw = await startTestWorker({
      logger: recordingLogger(entries),
      plugins: [hanging(), watchdog({ timeout: 0.5 }, { exit: never })],
    });
    const taskId = tw.submit({ mock: {} });
    const exit = await tw.exited;
    expect(exit.mode).toBe('now');
    expect(exit.reason).toMatch(
      new RegExp(
        `^watchdog: no progress for 0.5 s: hook hanging.prepare \\(task ${taskId}, \\d+ s\\) has not returned$`,
      ),
    );
    const fired = entries.find((e) => e.level === 'error' && e.message?.startsWith('watchdog:'));
    expect(fired?.fields.plugin).toBe('watchdog');
    expect(fired?.fields.stuck).toEqual([
      expect.objectContaining({ plugin: 'hanging', hook: 'prepare', taskId }),
    ]);
    const status = tw.queue.statusOf(taskId);
    expect(status.runs[0]).toMatchObject({ state: 'exception', reasonResolved: 'worker-shutdown' });
    await tw.queue.close();
  });

  it('notices a worker loop that makes no progress (a claimWork that never answers)', async () => {
    const entries: Entry[] = [];
    const queue = new FakeQueue({ longPollMs: 600_000 });
    const tw = await startTestWorker({
      queue,
      logger: recordingLogger(entries),
      plugins: [watchdog({ timeout: 0.3 }, { exit: never })],
    });
    const exit = await tw.exited;
    expect(exit.mode).toBe('now');
    expect(exit.fatal).toBe(true); // a failure stop: the tcw process exits non-zero
    expect(exit.reason).toMatch(
      /^watchdog: the worker loop made no progress for \d+ s \(last progress: claim loop\)$/,
    );
    expect(entries.some((e) => e.level === 'error' && e.fields.lastProgress === 'claim loop')).toBe(true);
    await queue.close();
  });

  it('lets a task run longer than the timeout, and an idle worker poll', async () => {
    // a generous timeout: the gaps between progress events under a loaded machine must stay below it
    const tw = await startTestWorker({ plugins: [watchdog({ timeout: 1 }, { exit: never })] });
    try {
      const result = await tw.run({ mock: { delayMs: 2500, log: 'long task' } });
      expect(result.resolution).toBe('completed');
      // idle: the claim loop keeps polling (20 ms long-polls), which is progress
      await new Promise((resolve) => setTimeout(resolve, 2000));
      expect(tw.worker.stopping).toBe(false);
    } finally {
      await tw.stop();
    }
  });

  it('ends the process when the stopped worker does not end by itself', async () => {
    const entries: Entry[] = [];
    const exits: number[] = [];
    const tw = await startTestWorker({
      logger: recordingLogger(entries),
      // the hook ignores the abort: only core's hook timeout (4 s here) would end it
      plugins: [
        hanging(true),
        watchdog({ timeout: 0.2, forceExitAfter: 0.2 }, { exit: (code) => exits.push(code) }),
      ],
      worker: { hookTimeoutMs: 4000 },
    });
    tw.submit({ mock: {} });
    const exit = await tw.exited;
    expect(exit.reason).toMatch(/^watchdog: no progress/);
    expect(exits).toEqual([FORCE_EXIT_CODE]);
    expect(
      entries.some((e) =>
        e.message?.startsWith('watchdog: the worker did not end after being stopped; exiting the process'),
      ),
    ).toBe(true);
    await tw.queue.close();
  });

  it('does not end the process once the worker has ended', async () => {
    const tw = await startTestWorker({
      plugins: [hanging(), watchdog({ timeout: 0.2, forceExitAfter: 2 }, { exit: never })],
    });
    tw.submit({ mock: {} });
    await tw.exited;
    await tw.queue.close();
    // had the force-exit timer survived the worker's end, `never` would throw from a timer and fail the run
    await new Promise((resolve) => setTimeout(resolve, 2500));
  });

  it('refuses a bad config, naming the key', () => {
    expect(() => watchdog({ timeout: 0 })).toThrow(ConfigError);
    expect(() => watchdog({ timeout: -5 })).toThrow('plugins.watchdog.timeout');
    expect(() => watchdog({ forceExitAfter: -1 })).toThrow('plugins.watchdog.forceExitAfter');
  });

  it('exports a provider the app loads as plugins.watchdog', async () => {
    expect(provider).toMatchObject({ kind: 'plugin', name: 'watchdog', coreRange: '^0.1.0' });
    const validate = createAjv().compile(provider.configSchema);
    expect(validate({ timeout: 600, forceExitAfter: 0 })).toBe(true);
    expect(validate({ timeout: 0 })).toBe(false);
    expect(validate({ timeout: '45m' })).toBe(false);
    expect(validate({ other: 1 })).toBe(false);
    const plugin = await provider.create({});
    expect(plugin.name).toBe('watchdog');
  });
});
