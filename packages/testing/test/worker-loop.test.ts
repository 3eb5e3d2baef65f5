// The worker loop against the FakeQueue port: capacity, claims only for free slots, reclaim timing and
// credentials, 409 handling, cancellation, graceful and immediate stop.
import { BACKING_LOG_NAME, ConfigError, PluginError, type PluginV1 } from '@tcw/core';
import { describe, expect, it } from 'vitest';
import { createMockEngine, FakeQueue, startTestWorker } from '../src/index.js';

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('worker loop', () => {
  it('capacity 4: at most 4 tasks at once, and claimWork asks only for free slots', async () => {
    let running = 0;
    let peak = 0;
    const counter: PluginV1 = {
      specificationVersion: 'v1',
      name: 'counter',
      taskPlugin: () => ({
        started: () => {
          running++;
          peak = Math.max(peak, running);
        },
        stopped: () => {
          running--;
          return undefined;
        },
      }),
    };
    const tw = await startTestWorker({ capacity: 4, plugins: [counter] });
    const ids = Array.from({ length: 10 }, () => tw.submit({ mock: { delayMs: 80 } }));
    const results = await Promise.all(ids.map((id) => tw.result(id)));
    await tw.stop();
    expect(results.every((r) => r.resolution === 'completed')).toBe(true);
    expect(peak).toBe(4);
    // every claimWork asked for no more than the slots that were free when it was sent
    const claimCalls = tw.queue.calls.filter((c) => c.method === 'claimWork');
    const requested = claimCalls.map((c) => (c.args[1] as { tasks: number }).tasks);
    expect(Math.max(...requested)).toBeLessThanOrEqual(4);
    expect(requested[0]).toBe(4);
    // at every claimWork, the tasks asked for plus the tasks then running never exceed the capacity
    const runs = ids.map((id) => tw.queue.statusOf(id).runs[0]!);
    for (const call of claimCalls) {
      const runningThen = runs.filter(
        (r) => Date.parse(r.started!) < call.at && Date.parse(r.resolved!) > call.at,
      ).length;
      expect(runningThen + (call.args[1] as { tasks: number }).tasks).toBeLessThanOrEqual(4);
    }
  });

  it("a finished run's cleanup overlaps the next task, at most `capacity` of them; stop waits for them", async () => {
    const engine = createMockEngine();
    // at each start: which earlier sandboxes were already cleaned up (result set disposed)
    const disposedAtStart: boolean[][] = [];
    const resolvedEvents: string[] = [];
    const probe: PluginV1 = {
      specificationVersion: 'v1',
      name: 'probe',
      taskPlugin: () => ({
        started: () => {
          disposedAtStart.push(engine.sandboxes.slice(0, -1).map((s) => s.disposed));
        },
      }),
    };
    const tw = await startTestWorker({ engine, capacity: 1, plugins: [probe] });
    tw.worker.events.on('task-resolved', (e) => resolvedEvents.push(e.taskId));
    // task 2's cleanup is much longer than task 1's, so task 3 starts (after task 1's) while it still runs
    const ids = [300, 2000, 10].map((disposeDelayMs) => tw.submit({ mock: { delayMs: 20, disposeDelayMs } }));
    for (const id of ids) expect((await tw.result(id)).resolution).toBe('completed');
    await tw.stop();
    // task 2 started while task 1 was still being cleaned up; task 3 waited for task 1's cleanup (1 in flight)
    expect(disposedAtStart[0]).toEqual([]);
    expect(disposedAtStart[1]).toEqual([false]);
    expect(disposedAtStart[2]).toEqual([true, false]);
    // the worker's stop waited for every cleanup, and task-resolved came after each one (task 2's last)
    expect(engine.sandboxes.map((s) => s.disposed)).toEqual([true, true, true]);
    expect(resolvedEvents).toEqual([ids[0], ids[2], ids[1]]);
  });

  it('a plugin whose init fails: PluginError naming it, and what already started is disposed', async () => {
    const events: string[] = [];
    const engine = createMockEngine();
    engine.dispose = async () => {
      events.push('engine.dispose');
    };
    const ok: PluginV1 = {
      specificationVersion: 'v1',
      name: 'ok',
      init: () => {
        events.push('ok.init');
      },
      dispose: () => {
        events.push('ok.dispose');
      },
    };
    const broken: PluginV1 = {
      specificationVersion: 'v1',
      name: 'broken',
      init: () => {
        throw new Error('port 1 is taken');
      },
      dispose: () => {
        events.push('broken.dispose');
      },
    };
    const never: PluginV1 = {
      specificationVersion: 'v1',
      name: 'never',
      init: () => {
        events.push('never.init');
      },
    };
    const error = await startTestWorker({ engine, plugins: [ok, broken, never] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PluginError);
    expect((error as Error).message).toBe('plugin broken failed in init: port 1 is taken');
    expect(events).toEqual(['ok.init', 'ok.dispose', 'engine.dispose']);
    // a ConfigError from init keeps its type (the tcw app maps it to exit code 64)
    const configError = await startTestWorker({
      plugins: [
        {
          specificationVersion: 'v1',
          name: 'picky',
          init: () => {
            throw new ConfigError([{ path: 'plugins.picky.level', message: 'must be 1 to 3' }]);
          },
        },
      ],
    }).catch((e: unknown) => e);
    expect(configError).toBeInstanceOf(ConfigError);
  });

  it('an engine whose init fails: an error naming the engine; a ConfigError keeps its type; the folder is free', async () => {
    const { InternalError } = await import('@tcw/core');
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const engine = createMockEngine();
    engine.init = () => {
      throw new Error('cannot reach dockerd at /var/run/docker.sock');
    };
    const error = await startTestWorker({ engine }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InternalError);
    expect((error as Error).message).toBe(
      'engine mock failed in init: cannot reach dockerd at /var/run/docker.sock',
    );
    expect(((error as Error).cause as Error).message).toBe('cannot reach dockerd at /var/run/docker.sock');
    const picky = createMockEngine();
    picky.init = () => {
      throw new ConfigError([{ path: 'engines.mock.socket', message: 'must be a path' }]);
    };
    expect(await startTestWorker({ engine: picky }).catch((e: unknown) => e)).toBeInstanceOf(ConfigError);
    // the work folder taken for the failed start is given back: a worker on it starts
    const workDir = await mkdtemp(join(tmpdir(), 'engine-init-'));
    try {
      const { Worker } = await import('@tcw/core');
      const { FakeQueue } = await import('../src/index.js');
      const failing = new Worker({
        queue: new FakeQueue(),
        engine,
        plugins: [],
        identity: { taskQueueId: 't/q', workerGroup: 'g', workerId: 'w' },
        capacity: 1,
        workDir,
      });
      await expect(failing.start()).rejects.toThrow(/engine mock failed in init/);
      const ok = new Worker({
        queue: new FakeQueue(),
        engine: createMockEngine(),
        plugins: [],
        identity: { taskQueueId: 't/q', workerGroup: 'g', workerId: 'w' },
        capacity: 1,
        workDir,
      });
      await ok.start();
      ok.stopNow('test over');
      await ok.run();
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  });

  it("at start, what a dead worker's runs left in tasks/ is removed; a run's own files go when it ends", async () => {
    const { mkdtemp, mkdir, writeFile, readdir, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const workDir = await mkdtemp(join(tmpdir(), 'tasks-leftovers-'));
    try {
      await mkdir(join(workDir, 'tasks', 'old-run', 'upload-x'), { recursive: true });
      await writeFile(join(workDir, 'tasks', 'old-run', 'upload-x', 'spool'), 'spool');
      await writeFile(join(workDir, 'tasks', 'Abc-0.log'), 'an old log');
      const seen: string[][] = [];
      const watcher: PluginV1 = {
        specificationVersion: 'v1',
        name: 'watcher',
        taskPlugin: () => ({
          started: async () => {
            seen.push(await readdir(join(workDir, 'tasks')));
          },
        }),
      };
      const tw = await startTestWorker({ plugins: [watcher], worker: { workDir } });
      const taskId = tw.submit({ mock: { log: 'hi' } });
      const result = await tw.result(taskId);
      expect(result.resolution).toBe('completed');
      // during the run: its log file, and nothing of the dead worker's
      expect(seen).toEqual([[`${taskId}-0.log`]]);
      await tw.stop();
      expect(await readdir(join(workDir, 'tasks'))).toEqual([]);
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  });

  it('reclaims before takenUntil and uses the fresh credentials afterwards', async () => {
    const queue = new FakeQueue({ longPollMs: 20, claimTimeoutMs: 400 });
    const tw = await startTestWorker({ queue, worker: { cancelPollMs: 0 } });
    const taskId = tw.submit({ mock: { delayMs: 1100 } });
    const result = await tw.result(taskId);
    await tw.stop();
    expect(result.resolution).toBe('completed');
    const reclaims = queue.calls.filter((c) => c.method === 'reclaimTask');
    // 400 ms claims reclaimed at half-time over ~1.1 s: at least 3 reclaims, each well before expiry
    expect(reclaims.length).toBeGreaterThanOrEqual(3);
    const claimAt = queue.calls.find((c) => c.method === 'claimWork' && c.at <= reclaims[0]!.at)!.at;
    expect(reclaims[0]!.at - claimAt).toBeLessThan(400);
    for (let i = 1; i < reclaims.length; i++) expect(reclaims[i]!.at - reclaims[i - 1]!.at).toBeLessThan(400);
    // the resolution used the credentials of the last reclaim, not the claim's
    const report = queue.calls.find((c) => c.method === 'reportCompleted')!;
    const statusRun = queue.statusOf(taskId).runs[0]!;
    expect(statusRun.state).toBe('completed');
    expect(report.credentials?.clientId).not.toBe(reclaims[0]!.credentials?.clientId);
    expect(report.credentials?.clientId).toMatch(/^task-client\//);
  });

  it("the task log masks the worker's logSecrets and the run's credentials, the claim's and every reclaim's", async () => {
    const queue = new FakeQueue({ longPollMs: 20, claimTimeoutMs: 400 });
    const seen: string[] = [];
    // a plugin that hands the run's credentials on (as a proxy would) and writes them to the log, split in two
    const leaky: PluginV1 = {
      specificationVersion: 'v1',
      name: 'leaky',
      taskPlugin: () => ({
        started: (context) => {
          const token = context.credentials().accessToken;
          seen.push(token);
          context.log.write(`claim token=${token.slice(0, 5)}`);
          context.log.write(`${token.slice(5)}\n`);
        },
        stopped: (context) => {
          const token = context.credentials().accessToken;
          seen.push(token);
          context.log.write(`current token=${token}\n`);
          return undefined;
        },
      }),
    };
    const tw = await startTestWorker({
      queue,
      plugins: [leaky],
      worker: { cancelPollMs: 0, logSecrets: ['worker-wide-s3cret'] },
    });
    const result = await tw.run({ mock: { delayMs: 1100, log: 'the worker secret: worker-wide-s3cret\n' } });
    await tw.stop();
    expect(result.resolution).toBe('completed');
    expect(seen).toHaveLength(2);
    expect(seen[1]).not.toBe(seen[0]); // reclaimed in between: fresh credentials
    for (const token of [...seen, 'worker-wide-s3cret']) expect(result.log).not.toContain(token);
    expect(result.log).toContain('claim token=[secret]\n');
    expect(result.log).toContain('current token=[secret]\n');
    expect(result.log).toContain('the worker secret: [secret]\n');
  });

  it('a 409 on reclaim stops the task at once and does not resolve it', async () => {
    const queue = new FakeQueue({ longPollMs: 20, claimTimeoutMs: 300 });
    const tw = await startTestWorker({ queue, worker: { cancelPollMs: 0 } });
    const calls: string[] = [];
    const taskId = tw.submit({ mock: { delayMs: 30_000 } });
    await until(() =>
      queue.calls.some(
        (c) => c.method === 'claimWork' && queue.statusOf(taskId).runs[0]?.state === 'running',
      ),
    );
    queue.failNext('reclaimTask', 409);
    tw.worker.events.on('task-resolved', (e) => calls.push(`${e.taskId}:${e.resolution?.state ?? 'gone'}`));
    await until(() => calls.length === 1, 5000);
    expect(calls).toEqual([`${taskId}:gone`]);
    expect(queue.calls.filter((c) => c.method.startsWith('report'))).toHaveLength(0);
    // the run is still "running" in the queue: nothing was reported
    expect(queue.statusOf(taskId).runs[0]?.state).toBe('running');
    await tw.stop();
  });

  it('a cancelled task is noticed by the status watch, aborted, and not resolved; its log is uploaded', async () => {
    const tw = await startTestWorker();
    const taskId = tw.submit({ mock: { delayMs: 30_000, log: 'working' } });
    await until(() => tw.queue.statusOf(taskId).runs[0]?.state === 'running');
    await new Promise((r) => setTimeout(r, 50));
    tw.queue.cancelTask(taskId);
    const resolved = new Promise((resolve) => tw.worker.events.once('task-resolved', resolve));
    await resolved;
    expect(tw.queue.calls.filter((c) => c.method.startsWith('report'))).toHaveLength(0);
    expect(tw.queue.statusOf(taskId).runs[0]).toMatchObject({
      state: 'exception',
      reasonResolved: 'canceled',
    });
    const log = tw.queue.artifactData(taskId, BACKING_LOG_NAME).toString();
    expect(log).toContain('working');
    expect(log).toContain('stopping the task');
    await tw.stop();
  });

  it('graceful stop: stops claiming and lets running tasks finish', async () => {
    const tw = await startTestWorker({ capacity: 2 });
    const a = tw.submit({ mock: { delayMs: 300 } });
    await until(() => tw.queue.statusOf(a).runs[0]?.state === 'running');
    const exit = tw.stop('graceful');
    const b = tw.submit({ mock: {} });
    expect((await exit).mode).toBe('graceful');
    expect(tw.queue.statusOf(a).runs[0]?.state).toBe('completed');
    // b was never run: either still pending, or handed to the long-poll in flight and given back at once
    // (worker-shutdown, so the queue made a retry run)
    const statusB = tw.queue.statusOf(b);
    expect(statusB.state).toBe('pending');
    expect(statusB.runs.every((r) => r.state === 'pending' || r.reasonResolved === 'worker-shutdown')).toBe(
      true,
    );
  });

  it('graceful stop aborts tasks as worker-shutdown when the grace period is over', async () => {
    const tw = await startTestWorker({ worker: { shutdownGraceMs: 100 } });
    const a = tw.submit({ mock: { delayMs: 30_000 } });
    await until(() => tw.queue.statusOf(a).runs[0]?.state === 'running');
    await tw.stop('graceful');
    const status = tw.queue.statusOf(a);
    expect(status.runs[0]).toMatchObject({ state: 'exception', reasonResolved: 'worker-shutdown' });
    expect(status.runs[1]).toMatchObject({ state: 'pending', reasonCreated: 'retry' });
  });

  it('immediate stop: aborts running tasks, resolved worker-shutdown (the queue retries them)', async () => {
    const tw = await startTestWorker({ capacity: 2 });
    const a = tw.submit({ mock: { delayMs: 30_000 } });
    const b = tw.submit({ mock: { delayMs: 30_000, ignoreTerm: true } });
    const engine = tw.engine as unknown as {
      sandboxes: Array<{ started: boolean; aborts: unknown[]; disposed: boolean }>;
    };
    // both tasks claimed and their sandboxes running (a claimed task may still be preparing on a loaded machine)
    await until(() => [a, b].every((id) => tw.queue.statusOf(id).runs[0]?.state === 'running'));
    await until(() => engine.sandboxes.length === 2 && engine.sandboxes.every((s) => s.started));
    const started = Date.now();
    const exit = await tw.stop('now');
    expect(exit.mode).toBe('now');
    expect(Date.now() - started).toBeLessThan(10_000);
    for (const id of [a, b]) {
      expect(tw.queue.statusOf(id).runs[0]).toMatchObject({
        state: 'exception',
        reasonResolved: 'worker-shutdown',
      });
      expect(tw.queue.artifacts(id).get(BACKING_LOG_NAME)?.present).toBe(true);
    }
    expect(engine.sandboxes.every((s) => s.aborts.length > 0 && s.disposed)).toBe(true);
  });

  it('keeps claiming after claimWork errors (5xx), with a back-off', async () => {
    const tw = await startTestWorker();
    tw.queue.failNext('claimWork', 500, 2);
    const result = await tw.run({ mock: {} });
    expect(result.resolution).toBe('completed');
    const errors: unknown[] = [];
    tw.worker.events.on('internal-error', (e) => errors.push(e));
    await tw.stop();
  });

  it('retries a resolution that failed with 5xx', async () => {
    const tw = await startTestWorker();
    tw.queue.failNext('reportCompleted', 503, 1);
    const result = await tw.run({ mock: {} });
    await tw.stop();
    expect(result.resolution).toBe('completed');
    expect(tw.queue.calls.filter((c) => c.method === 'reportCompleted')).toHaveLength(2);
  });

  it('emits idle events while nothing runs', async () => {
    const tw = await startTestWorker({ worker: { idleReportMs: 30 } });
    const idle = await new Promise<{ idleMs: number }>((resolve) => tw.worker.events.once('idle', resolve));
    expect(idle.idleMs).toBeGreaterThanOrEqual(0);
    await tw.stop();
  });
});
