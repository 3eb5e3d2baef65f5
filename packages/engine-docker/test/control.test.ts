// Privileges, limits, abort, leftover cleanup, and an unreachable dockerd — against a real dockerd.
// Privileged containers cannot run on this CI machine (its dockerd lacks the capabilities), so the privileged test
// checks the create request (inspecting the container) rather than the container's behaviour.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FatalError, InternalError, MalformedPayloadError, silentLogger, TaskLog, TcwError } from '@tcw/core';
import { runSandbox, startTestWorker } from '@tcw/testing';
import { describe, expect, it } from 'vitest';
import provider, { createDockerEngine } from '../src/index.js';
import { containersOfTask, dockerCli, engine, IMAGE, sh, taskInfo } from './helpers.js';
import { runDirect } from './images-helpers.js';

const rand = () => Math.random().toString(36).slice(2, 10);

function hostConfig(taskId: string): Record<string, unknown> {
  const [id] = containersOfTask(taskId);
  return JSON.parse(dockerCli('inspect', '--format', '{{json .HostConfig}}', id!));
}

describe('docker engine: capabilities', () => {
  it('privileged is refused unless the config allows it, and then only with the scope', async () => {
    const payload = { ...sh('true'), capabilities: { privileged: true } };
    const off = await runDirect(engine(), payload, { scopes: ['docker-worker:capability:privileged'] }).catch(
      (e: Error) => e,
    );
    expect(MalformedPayloadError.isMalformedPayload(off)).toBe(true);
    expect((off as Error).message).toBe(
      '/capabilities/privileged: this worker does not run privileged containers (engines.docker.allowPrivileged is off)',
    );
    const noScope = await runDirect(engine({ allowPrivileged: true }), payload).catch((e: Error) => e);
    expect((noScope as Error).message).toBe(
      '/capabilities/privileged: the task lacks the scope docker-worker:capability:privileged',
    );
    expect(containersOfTask('none')).toEqual([]);
  });

  it('allowed and scoped (exact, per task queue, or by a * scope): the container is created privileged', async () => {
    for (const scope of [
      'docker-worker:capability:privileged',
      'docker-worker:capability:privileged:tcw-test/fake',
      'docker-worker:capability:*',
    ]) {
      const taskId = `priv${rand()}`;
      const run = await runDirect(
        engine({ allowPrivileged: true }),
        { ...sh('true'), capabilities: { privileged: true } },
        { scopes: [scope], taskId },
      );
      expect(hostConfig(taskId).Privileged).toBe(true);
      // where dockerd can run privileged containers the task succeeds; on this CI machine its runtime cannot apply
      // the capabilities, which is the worker's problem: an internal error, never the task's failure
      if (!run.result.success) {
        expect(TcwError.hasCode(run.result.error, InternalError.code)).toBe(true);
        expect(run.result.error?.message).toMatch(/^dockerd could not start the container: /);
        // the task runner writes the error's message to the log: the engine does not say it a second time
        expect(run.log).not.toContain('did not start');
      }
      await run.result.dispose();
      expect(containersOfTask(taskId)).toEqual([]);
    }
    const taskId = `unpriv${rand()}`;
    const plain = await runDirect(engine({ allowPrivileged: true }), sh('true'), { taskId });
    expect(hostConfig(taskId).Privileged).toBe(false);
    await plain.result.dispose();
  });

  it('devices: refused unless allowed and scoped; hostSharedMemory binds the host’s /dev/shm', async () => {
    const payload = {
      ...sh('grep " /dev/shm " /proc/mounts'),
      capabilities: { devices: { hostSharedMemory: true } },
    };
    const off = await runDirect(engine(), payload).catch((e: Error) => e);
    expect((off as Error).message).toBe(
      '/capabilities/devices/hostSharedMemory: this worker does not allow the device hostSharedMemory (engines.docker.allowDevices)',
    );
    const noScope = await runDirect(engine({ allowDevices: ['hostSharedMemory'] }), payload).catch(
      (e: Error) => e,
    );
    expect((noScope as Error).message).toContain(
      'lacks the scope docker-worker:capability:device:hostSharedMemory',
    );
    const taskId = `shm${rand()}`;
    const run = await runDirect(engine({ allowDevices: ['hostSharedMemory'] }), payload, {
      scopes: ['docker-worker:capability:device:hostSharedMemory'],
      taskId,
    });
    expect(run.result.success).toBe(true);
    expect(hostConfig(taskId).Binds).toEqual(['/dev/shm:/dev/shm']);
    await run.result.dispose();
  });
});

describe('docker engine: limits from the config', () => {
  it('memory, cpus, pids and network mode apply to every task container', async () => {
    const taskId = `limits${rand()}`;
    const run = await runDirect(
      engine({ memoryMb: 64, cpus: 0.5, pidsLimit: 50, network: 'none' }),
      sh(
        'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; ' +
          'echo "ifaces: $(ls /sys/class/net | tr "\\n" " ")"',
      ),
      { taskId },
    );
    expect(run.result.success).toBe(true);
    expect(run.log).toContain(`${64 * 1024 * 1024}\n50\n`);
    expect(run.log).toContain('ifaces: lo \n');
    expect(hostConfig(taskId)).toMatchObject({ NanoCpus: 500_000_000, PidsLimit: 50, NetworkMode: 'none' });
    await run.result.dispose();
  });
});

describe('docker engine: abort and cleanup', () => {
  async function startDirect(taskId: string, script: string) {
    const dir = await mkdtemp(join(tmpdir(), 'tcw-docker-abort-'));
    const log = TaskLog.create(join(dir, 'log'));
    const builder = await engine().newSandboxBuilder({
      task: taskInfo(taskId),
      payload: sh(script),
      log,
      signal: new AbortController().signal,
      logger: silentLogger,
      artifacts: undefined as never,
    });
    const sandbox = await builder.start();
    const reader = log.createReader();
    let text = '';
    const read = (async () => {
      for await (const c of reader) text += String(c);
    })();
    const waitFor = async (s: string) => {
      for (let i = 0; i < 200 && !text.includes(s); i++) await new Promise((r) => setTimeout(r, 25));
      expect(text).toContain(s);
    };
    return {
      sandbox,
      waitFor,
      async text() {
        await log.close();
        await read;
        return text;
      },
    };
  }

  it('abort sends SIGTERM first: a task that handles it ends cleanly; the container is removed on dispose', async () => {
    const taskId = `term${rand()}`;
    const t = await startDirect(taskId, 'trap "echo got-term; exit 0" TERM; echo ready; sleep 300 & wait');
    await t.waitFor('ready');
    await t.sandbox.abort({ graceMs: 20_000 });
    const result = await t.sandbox.wait();
    expect(result.aborted).toBe(true);
    expect(result.success).toBe(false);
    expect(await t.text()).toContain('got-term');
    expect(containersOfTask(taskId)).toHaveLength(1);
    await result.dispose();
    expect(containersOfTask(taskId)).toEqual([]);
  });

  it('abort kills a task that ignores SIGTERM after the grace period', async () => {
    const taskId = `kill${rand()}`;
    const t = await startDirect(
      taskId,
      'trap "echo ignoring-term" TERM; echo ready; while true; do sleep 1; done',
    );
    await t.waitFor('ready');
    await t.sandbox.abort({ graceMs: 1000 });
    const result = await t.sandbox.wait();
    expect(result.aborted).toBe(true);
    expect(dockerCli('inspect', '--format', '{{.State.Running}}', containersOfTask(taskId)[0]!)).toBe(
      'false',
    );
    await result.dispose();
    expect(containersOfTask(taskId)).toEqual([]);
  });

  it('on init, the engine removes what a crashed worker of the same identity left, and nothing else', async () => {
    const worker = { taskQueueId: 'tcw-test/crash', workerGroup: 'g', workerId: `crashed-${rand()}` };
    const mine = dockerCli(
      'run',
      '-d',
      '--label',
      `tcw.worker=tcw-test/crash/g/${worker.workerId}`,
      '--label',
      'tcw.task-id=left',
      IMAGE,
      'sleep',
      '300',
    );
    const stopped = dockerCli(
      'create',
      '--label',
      `tcw.worker=tcw-test/crash/g/${worker.workerId}`,
      IMAGE,
      'true',
    );
    const other = dockerCli(
      'run',
      '-d',
      '--label',
      'tcw.worker=tcw-test/crash/g/someone-else',
      IMAGE,
      'sleep',
      '300',
    );
    const e = createDockerEngine();
    await e.init!({
      logger: silentLogger,
      worker,
      workDir: await mkdtemp(join(tmpdir(), 'tcw-docker-init-')),
    });
    const left = dockerCli('ps', '-aq', '--no-trunc', '--filter', 'label=tcw.worker');
    expect(left).not.toContain(mine);
    expect(left).not.toContain(stopped);
    expect(left).toContain(other);
    dockerCli('rm', '-f', other);
  });

  it('an unreachable dockerd: creating the engine fails with a clear message', async () => {
    const error = await Promise.resolve(provider.create({ socketPath: '/nonexistent/docker.sock' })).catch(
      (e: unknown) => e,
    );
    expect(TcwError.hasCode(error, FatalError.code)).toBe(true);
    expect((error as Error).message).toMatch(
      /^cannot reach dockerd at unix:\/\/\/nonexistent\/docker\.sock: .*ENOENT.*Is the Docker daemon running/,
    );
  });
});

describe('docker engine in a worker', () => {
  it('exit codes become resolutions; a refused capability is malformed-payload', async () => {
    const tw = await startTestWorker({ engine: engine() });
    const ok = await tw.run(sh('echo hello from docker'));
    expect(ok.resolution).toBe('completed');
    expect(ok.log).toContain('hello from docker');
    expect((await tw.run(sh('exit 3'))).resolution).toBe('failed');
    const refused = await tw.run({ ...sh('true'), capabilities: { privileged: true } });
    expect(refused.resolution).toBe('exception/malformed-payload');
    expect(refused.log).toContain('/capabilities/privileged');
    await tw.stop();
  });

  it('cancelTask: the container is stopped and removed', async () => {
    const tw = await startTestWorker({ engine: engine(), worker: { cancelPollMs: 100, abortGraceMs: 1000 } });
    const taskId = tw.submit(sh('echo started; sleep 300'));
    for (let i = 0; i < 400 && containersOfTask(taskId).length === 0; i++)
      await new Promise((r) => setTimeout(r, 25));
    expect(containersOfTask(taskId)).toHaveLength(1);
    tw.queue.cancelTask(taskId);
    const result = await tw.result(taskId);
    expect(result.resolution).toBe('exception/canceled');
    await tw.stop();
    expect(containersOfTask(taskId)).toEqual([]);
  });

  it('the payload schema names the offending field', async () => {
    await expect(runSandbox(engine(), { command: ['true'] })).rejects.toThrow(/image/);
    await expect(runSandbox(engine(), { image: IMAGE, command: 'echo hi' })).rejects.toThrow(/\/command/);
    await expect(runSandbox(engine(), { image: { type: 'task-image', taskId: 'abc' } })).rejects.toThrow(
      /\/image/,
    );
    await expect(
      runSandbox(engine(), { image: IMAGE, capabilities: { devices: { gpu: true } } }),
    ).rejects.toThrow(/\/capabilities\/devices/);
  });
});
