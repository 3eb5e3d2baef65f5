// The task runner and plugin contract, end to end in-process: real Worker, FakeQueue, mock engine.
import {
  BACKING_LOG_NAME,
  FatalError,
  InternalError,
  MalformedPayloadError,
  type PluginV1,
  ResourceUnavailableError,
  RunGoneError,
  type TaskPluginV1,
} from '@tcw/core';
import { describe, expect, it } from 'vitest';
import { createMockEngine, type HookCall, runPluginTask, startTestWorker, traceHooks } from '../src/index.js';

const plugin = (name: string, hooks: TaskPluginV1 = {}, extra: Partial<PluginV1> = {}): PluginV1 => ({
  specificationVersion: 'v1',
  name,
  taskPlugin: () => hooks,
  ...extra,
});

const order = (calls: HookCall[]) => calls.map((c) => `${c.plugin}.${c.hook}`);

describe('task run: stages and hook order', () => {
  it('runs the forward hooks in config order and teardown in reverse, then resolves completed', async () => {
    const result = await runPluginTask({
      plugins: [plugin('a'), plugin('b')],
      payload: { mock: { log: 'hi' } },
    });
    expect(result.resolution).toBe('completed');
    expect(order(result.hooks)).toEqual([
      'a.taskPlugin',
      'b.taskPlugin',
      'a.prepare',
      'b.prepare',
      'a.buildSandbox',
      'b.buildSandbox',
      'a.started',
      'b.started',
      'a.stopped',
      'b.stopped',
      'a.finished',
      'b.finished',
      'b.dispose',
      'a.dispose',
    ]);
    expect(result.log).toContain('hi\n');
    expect(result.log).toMatch(/\[taskcluster [^\]]+\] Task .* run 0 on test-group\/test-worker/);
    expect(result.log).toMatch(/=== Task Finished === success/);
  });

  it('puts `pre` plugins first and `post` plugins last, keeping config order within a tier', async () => {
    const result = await runPluginTask({
      plugins: [
        plugin('late', {}, { enforce: 'post' }),
        plugin('mid'),
        plugin('early', {}, { enforce: 'pre' }),
      ],
      payload: { mock: {} },
    });
    const prepares = order(result.hooks).filter((h) => h.endsWith('.prepare'));
    expect(prepares).toEqual(['early.prepare', 'mid.prepare', 'late.prepare']);
    const disposes = order(result.hooks).filter((h) => h.endsWith('.dispose'));
    expect(disposes).toEqual(['late.dispose', 'mid.dispose', 'early.dispose']);
  });

  const failures: Array<[string, keyof TaskPluginV1]> = [
    ['prepare', 'prepare'],
    ['buildSandbox', 'buildSandbox'],
    ['started', 'started'],
    ['stopped', 'stopped'],
    ['finished', 'finished'],
  ];
  it.each(failures)(
    'a failure in %s: exception replaces the rest, dispose always runs, log uploaded',
    async (_, hook) => {
      const failing = plugin('bad', {
        [hook]: () => {
          throw new InternalError(`broken ${hook}`);
        },
      });
      const result = await runPluginTask({
        plugins: [plugin('a'), failing, plugin('c')],
        payload: { mock: {} },
      });
      expect(result.resolution).toBe('exception/internal-error');
      const calls = order(result.hooks);
      const failedAt = calls.indexOf(`bad.${hook}`);
      expect(failedAt).toBeGreaterThan(-1);
      // nothing of a later stage ran after the failure; exception then dispose, each in reverse order. A failure
      // in `finished` spares `a`, whose `finished` already ran: a plugin gets `finished` or `exception`, never both
      expect(calls.slice(failedAt + 1)).toEqual([
        'c.exception',
        'bad.exception',
        ...(hook === 'finished' ? [] : ['a.exception']),
        'c.dispose',
        'bad.dispose',
        'a.dispose',
      ]);
      if (hook === 'finished') {
        // the log is closed and uploaded before `finished`: the error goes to the worker's own log only
        expect(result.log).toContain('=== Task Finished ===');
        expect(calls).toContain('a.finished');
        expect(calls).not.toContain('a.exception');
      } else {
        expect(result.log).toContain(`plugin bad failed in ${hook}: broken ${hook}`);
      }
      expect(result.artifacts.get(BACKING_LOG_NAME)?.present).toBe(true);
    },
  );

  it('a failure of the engine (building the sandbox) is an exception; plugins get exception and dispose', async () => {
    const engine = createMockEngine();
    const original = engine.newSandboxBuilder.bind(engine);
    engine.newSandboxBuilder = async (opts) => {
      if ((opts.payload.mock as { log?: string }).log === 'bad-image')
        throw new MalformedPayloadError([{ pointer: '/mock/log', message: 'no such image' }]);
      return original(opts);
    };
    const result = await runPluginTask({
      engine,
      plugins: [plugin('a')],
      payload: { mock: { log: 'bad-image' } },
    });
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('/mock/log: no such image');
    expect(order(result.hooks)).toEqual(['a.taskPlugin', 'a.prepare', 'a.exception', 'a.dispose']);
  });

  it('a hook error is attributed to its plugin', async () => {
    const result = await runPluginTask({
      plugins: [
        plugin('quiet'),
        plugin('noisy', { started: () => Promise.reject(new Error('socket closed')) }),
      ],
      payload: { mock: {} },
    });
    expect(result.resolution).toBe('exception/internal-error');
    expect(result.log).toContain('plugin noisy failed in started: socket closed');
  });

  it('a hook that does not settle in time fails the task and stops the worker (fatal)', async () => {
    const hooks: HookCall[] = [];
    const tw = await startTestWorker({
      plugins: [traceHooks(plugin('stuck', { prepare: () => new Promise(() => {}) }), hooks)],
      worker: { hookTimeoutMs: 200, hookWarnAfterMs: 50 },
    });
    const result = await tw.run({ mock: {} });
    expect(result.resolution).toBe('exception/internal-error');
    expect(result.log).toContain('plugin stuck did not finish prepare within 200 ms');
    const exit = await tw.exited;
    expect(exit.fatal).toBe(true);
    expect(exit.mode).toBe('graceful');
  });
});

describe('task run: a hook that reports progress', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('may work longer than the hook timeout as long as it calls progress() within it', async () => {
    const tw = await startTestWorker({
      plugins: [
        plugin('steady', {
          stopped: async ({ progress }) => {
            for (let i = 0; i < 5; i++) {
              await sleep(120);
              progress();
            }
          },
        }),
      ],
      worker: { hookTimeoutMs: 250, hookWarnAfterMs: 5000 },
    });
    const result = await tw.run({ mock: {} });
    expect(result.resolution).toBe('completed');
    await tw.stop();
  });

  it('uploads through ctx.artifacts report progress by themselves; the same hook without uploads times out', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'progress-uploads-'));
    try {
      const uploader = (upload: boolean) =>
        plugin('uploader', {
          // four 150 ms pauses: 600 ms in all, with a 250 ms hook timeout
          stopped: async ({ artifacts }) => {
            for (let i = 0; i < 4; i++) {
              await sleep(150);
              if (!upload) continue;
              const path = join(dir, `f${i}.txt`);
              writeFileSync(path, `file ${i}\n`);
              await artifacts.uploadFile({ name: `public/f${i}.txt`, path, contentType: 'text/plain' });
            }
          },
        });
      const uploading = await startTestWorker({
        plugins: [uploader(true)],
        worker: { hookTimeoutMs: 250, hookWarnAfterMs: 5000 },
      });
      const ok = await uploading.run({ mock: {} });
      expect(ok.resolution).toBe('completed');
      await uploading.stop();

      const idle = await startTestWorker({
        plugins: [uploader(false)],
        worker: { hookTimeoutMs: 250, hookWarnAfterMs: 5000 },
      });
      const stuck = await idle.run({ mock: {} });
      expect(stuck.resolution).toBe('exception/internal-error');
      expect(stuck.log).toContain('plugin uploader did not finish stopped within 250 ms');
      await idle.exited;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('task run: a hook past its timeout', () => {
  it('gets its signal aborted and a moment to stop before exception and dispose run', async () => {
    const order: string[] = [];
    const slow: PluginV1 = {
      specificationVersion: 'v1',
      name: 'slow',
      taskPlugin: () => ({
        // ignores its signal at first, then stops 150 ms after the 200 ms timeout aborted it
        prepare: async ({ signal }) => {
          await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
          order.push('prepare saw the abort');
          await new Promise((r) => setTimeout(r, 150));
          order.push('prepare ended');
        },
        exception: () => {
          order.push('exception');
        },
        dispose: () => {
          order.push('dispose');
        },
      }),
    };
    const tw = await startTestWorker({
      plugins: [slow],
      worker: { hookTimeoutMs: 200, hookWarnAfterMs: 50 },
    });
    const result = await tw.run({ mock: {} });
    await tw.exited;
    expect(result.resolution).toBe('exception/internal-error');
    expect(result.log).toContain('plugin slow did not finish prepare within 200 ms');
    expect(order).toEqual(['prepare saw the abort', 'prepare ended', 'exception', 'dispose']);
  });
});

describe('task run: resolutions', () => {
  it('a non-zero exit never resolves completed, whatever the plugins say', async () => {
    const result = await runPluginTask({
      plugins: [plugin('optimist', { stopped: () => true })],
      payload: { mock: { exitCode: 3 } },
    });
    expect(result.resolution).toBe('failed');
    expect(result.log).toMatch(/=== Task Finished === failure .*exit code 3/);
  });

  it('a plugin may veto success from stopped', async () => {
    const result = await runPluginTask({
      plugins: [plugin('strict', { stopped: () => false })],
      payload: { mock: {} },
    });
    expect(result.resolution).toBe('failed');
  });

  it('a malformed payload is refused before anything is built, naming the fields', async () => {
    const tw = await startTestWorker({ plugins: [plugin('a')] });
    const result = await tw.run({ mock: { exitCode: 'zero' }, unknownKey: 1 });
    await tw.stop();
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('/mock/exitCode: must be integer');
    expect(result.log).toContain('/unknownKey: this payload key does not exist on this worker');
    expect((tw.engine as ReturnType<typeof createMockEngine>).sandboxes).toHaveLength(0);
  });

  it.each([
    ['malformed-payload', 'exception/malformed-payload', false],
    ['internal-error', 'exception/internal-error', false],
    ['resource-unavailable', 'exception/resource-unavailable', false],
    ['fatal', 'exception/internal-error', true],
  ] as const)('an engine outcome %s resolves %s', async (error, resolution, fatal) => {
    const tw = await startTestWorker();
    const result = await tw.run({ mock: { error } });
    expect(result.resolution).toBe(resolution);
    if (fatal) {
      const exit = await tw.exited;
      expect(exit.fatal).toBe(true);
    } else {
      expect(tw.worker.stopping).toBe(false);
      await tw.stop();
    }
  });

  it('control.fail (max run time) kills the sandbox; the task fails and stopped hooks still run', async () => {
    const failer = plugin('timer', {
      started: (ctx) => {
        setTimeout(() => void ctx.control.fail('max run time exceeded', { graceMs: 100 }), 50);
      },
    });
    const result = await runPluginTask({ plugins: [failer], payload: { mock: { delayMs: 60_000 } } });
    expect(result.resolution).toBe('failed');
    expect(result.log).toContain('max run time exceeded');
    expect(order(result.hooks)).toContain('timer.stopped');
    expect(order(result.hooks)).toContain('timer.finished');
  });

  it('a fatal error in a plugin resolves internal-error, then the worker stops by itself', async () => {
    const tw = await startTestWorker({
      plugins: [plugin('f', { prepare: () => Promise.reject(new FatalError('disk gone')) })],
    });
    const result = await tw.run({ mock: {} });
    expect(result.resolution).toBe('exception/internal-error');
    const exit = await tw.exited;
    expect(exit).toMatchObject({ fatal: true, mode: 'graceful' });
    expect(exit.reason).toContain('disk gone');
  });

  it('a 409 met by a hook (the run is gone) stops the task quietly: no resolution by the worker, no internal error', async () => {
    let tw: Awaited<ReturnType<typeof startTestWorker>>;
    const internalErrors: unknown[] = [];
    const goner = plugin('uploader', {
      started: (ctx) => {
        // the queue cancels the run; the plugin's next call is refused with 409 before the status watch notices
        tw.queue.cancelTask(ctx.task.taskId);
        throw new RunGoneError('createArtifact: 409 the run is resolved');
      },
    });
    tw = await startTestWorker({ plugins: [goner], worker: { cancelPollMs: 60_000 } });
    tw.worker.events.on('internal-error', (e) => internalErrors.push(e));
    const result = await tw.run({ mock: { delayMs: 60_000 } });
    expect(result.resolution).toBe('exception/canceled');
    const exit = await tw.stop();
    expect(exit.fatal).toBe(false);
    expect(internalErrors).toEqual([]);
    const calls = tw.queue.calls.map((c) => c.method);
    expect(calls).not.toContain('reportException');
  });

  it('resource-unavailable resolves exception/resource-unavailable and is not counted as an internal error', async () => {
    const internalErrors: unknown[] = [];
    const tw = await startTestWorker({
      plugins: [
        plugin('cache', { prepare: () => Promise.reject(new ResourceUnavailableError('cache server down')) }),
      ],
    });
    tw.worker.events.on('internal-error', (e) => internalErrors.push(e));
    const result = await tw.run({ mock: {} });
    await tw.stop();
    expect(result.resolution).toBe('exception/resource-unavailable');
    expect(result.log).toContain('cache server down');
    expect(internalErrors).toEqual([]);
  });

  it('an abort during a stage skips the hooks of that stage still to come; teardown still runs for every plugin', async () => {
    const hooks: HookCall[] = [];
    let tw: Awaited<ReturnType<typeof startTestWorker>>;
    const canceller = plugin('canceller', {
      prepare: async (ctx) => {
        tw.queue.cancelTask(ctx.task.taskId);
        // long enough for the worker's status watch (50 ms here) to notice and abort the task
        await new Promise((r) => setTimeout(r, 400));
      },
    });
    tw = await startTestWorker({
      plugins: [traceHooks(canceller, hooks), traceHooks(plugin('later'), hooks)],
    });
    const result = await tw.run({ mock: {} });
    await tw.stop();
    expect(result.resolution).toBe('exception/canceled');
    const calls = order(hooks);
    expect(calls).toContain('canceller.prepare');
    expect(calls).not.toContain('later.prepare');
    expect(calls).not.toContain('later.buildSandbox');
    expect(calls.slice(-4)).toEqual([
      'later.exception',
      'canceller.exception',
      'later.dispose',
      'canceller.dispose',
    ]);
  });

  it('control.fail before the sandbox exists: the sandbox is stopped as soon as it starts, and the task fails', async () => {
    const early = plugin('early', {
      buildSandbox: (ctx) => {
        void ctx.control.fail('refused before start');
      },
    });
    const result = await runPluginTask({ plugins: [early], payload: { mock: { delayMs: 60_000 } } });
    expect(result.resolution).toBe('failed');
    expect(result.log).toContain('refused before start');
  });
});
