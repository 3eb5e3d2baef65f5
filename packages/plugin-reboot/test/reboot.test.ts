import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, createAjv, type Logger } from '@tcw/core';
import { runPluginTask, startTestWorker } from '@tcw/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import provider, { reboot, wantsReboot } from '../src/index.js';

let dir: string;
let marker: string;
/** A real child process standing in for `sudo reboot`: it writes the marker file (and its argument). */
const markerCommand = () => ['/bin/sh', '-c', 'printf "rebooted %s" "$1" > "$0"', marker, 'now'];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tcw-reboot-test-'));
  marker = join(dir, 'marker');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

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

describe('@tcw/plugin-reboot', () => {
  it('stops after maxTasks tasks, lets them finish, then runs the reboot command', async () => {
    const tw = await startTestWorker({ plugins: [reboot({ maxTasks: 2, rebootCommand: markerCommand() })] });
    expect((await tw.run({ mock: {} })).resolution).toBe('completed');
    const second = tw.submit({ mock: { delayMs: 200 } });
    const exit = await tw.exited;
    expect((await tw.result(second)).resolution).toBe('completed');
    expect(exit).toMatchObject({ mode: 'graceful', fatal: false, tasksRun: 2 });
    expect(exit.reason).toBe('reboot: the worker has run 2 tasks (maxTasks 2)');
    expect(await readFile(marker, 'utf8')).toBe('rebooted now');
    const third = tw.submit({ mock: {} });
    expect(tw.queue.statusOf(third).state).toBe('pending');
    await tw.queue.close();
  });

  it('stops after maxLifetime', async () => {
    const tw = await startTestWorker({
      plugins: [reboot({ maxLifetime: 0.3, rebootCommand: markerCommand() })],
    });
    const exit = await tw.exited;
    expect(exit.reason).toBe('reboot: the worker reached its maximum lifetime of 0.3 s (maxLifetime)');
    expect(existsSync(marker)).toBe(true);
    await tw.queue.close();
  });

  it('reboots after a task that asks for it, when the config allows', async () => {
    const result = await runPluginTask({
      plugins: [reboot({ allowTaskReboots: true, rebootCommand: markerCommand() })],
      payload: { mock: {}, reboot: 'always' },
    });
    expect(result.resolution).toBe('completed');
    expect(result.exit.reason).toBe(`reboot: task ${result.taskId} asked for it (reboot: always)`);
    expect(existsSync(marker)).toBe(true);
    expect(result.hooks.filter((h) => h.plugin === 'reboot').map((h) => h.hook)).toContain('dispose');
  });

  it('on-failure and on-exception apply to how the task ended', async () => {
    const tw = await startTestWorker({
      plugins: [reboot({ allowTaskReboots: true, rebootCommand: markerCommand() })],
    });
    expect((await tw.run({ mock: {}, reboot: 'on-failure' })).resolution).toBe('completed');
    expect((await tw.run({ mock: { exitCode: 1 }, reboot: 'on-exception' })).resolution).toBe('failed');
    expect(tw.worker.stopping).toBe(false);
    const broken = await tw.run({ mock: { error: 'resource-unavailable' }, reboot: 'on-exception' });
    expect(broken.resolution).toBe('exception/resource-unavailable');
    const exit = await tw.exited;
    expect(exit.reason).toBe(`reboot: task ${broken.taskId} asked for it (reboot: on-exception)`);
    expect(existsSync(marker)).toBe(true);
    await tw.queue.close();

    expect(wantsReboot('on-failure', { state: 'failed' })).toBe(true);
    expect(wantsReboot('on-failure', { state: 'exception', reason: 'internal-error' })).toBe(true);
    expect(wantsReboot('on-failure', { state: 'completed' })).toBe(false);
    expect(wantsReboot('on-exception', { state: 'failed' })).toBe(false);
    expect(wantsReboot('on-exception', undefined)).toBe(true);
    expect(wantsReboot('always', { state: 'completed' })).toBe(true);
  });

  it('refuses the reboot key unless allowTaskReboots, saying why', async () => {
    const result = await runPluginTask({
      plugins: [reboot({ rebootCommand: markerCommand() })],
      payload: { mock: {}, reboot: 'always' },
    });
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain(
      '/reboot: this payload key does not exist on this worker (plugin:reboot: tasks cannot ask for a reboot on this worker (plugins.reboot.allowTaskReboots is false))',
    );
    expect(result.exit.reason).toBe('test stop');
    expect(existsSync(marker)).toBe(false);

    const bad = await runPluginTask({
      plugins: [reboot({ allowTaskReboots: true })],
      payload: { mock: {}, reboot: 'sometimes' },
    });
    expect(bad.log).toContain('/reboot: must be one of "always", "on-failure", "on-exception"');
  });

  it('does not run the command when something else stopped the worker', async () => {
    const tw = await startTestWorker({ plugins: [reboot({ maxTasks: 5, rebootCommand: markerCommand() })] });
    await tw.run({ mock: {} });
    const exit = await tw.stop();
    expect(exit.reason).toBe('test stop');
    expect(existsSync(marker)).toBe(false);
  });

  it('just stops when no rebootCommand is configured', async () => {
    const entries: Entry[] = [];
    const tw = await startTestWorker({
      logger: recordingLogger(entries),
      plugins: [reboot({ maxTasks: 1 })],
    });
    await tw.run({ mock: {} });
    const exit = await tw.exited;
    expect(exit.reason).toBe('reboot: the worker has run 1 tasks (maxTasks 1)');
    expect(entries.some((e) => e.message === 'no rebootCommand configured; the worker just stops')).toBe(
      true,
    );
    await tw.queue.close();
  });

  it('reports a reboot command that fails or cannot start, attributed to the plugin', async () => {
    const entries: Entry[] = [];
    const tw = await startTestWorker({
      logger: recordingLogger(entries),
      plugins: [reboot({ maxTasks: 1, rebootCommand: ['/bin/sh', '-c', 'echo no permission >&2; exit 3'] })],
    });
    await tw.run({ mock: {} });
    await tw.exited;
    await tw.queue.close();
    const failed = entries.find((e) => e.message === 'plugin dispose failed');
    expect(failed?.fields.plugin).toBe('reboot');
    expect(String((failed?.fields.err as Error | undefined)?.message)).toMatch(
      /rebootCommand \["\/bin\/sh","-c",.*\] ended with exit code 3: no permission/,
    );

    const missing: Entry[] = [];
    const tw2 = await startTestWorker({
      logger: recordingLogger(missing),
      plugins: [reboot({ maxTasks: 1, rebootCommand: [join(dir, 'no-such-command')] })],
    });
    await tw2.run({ mock: {} });
    await tw2.exited;
    await tw2.queue.close();
    const notStarted = missing.find((e) => e.message === 'plugin dispose failed');
    expect(String((notStarted?.fields.err as Error | undefined)?.message)).toMatch(
      /rebootCommand could not be started .*no-such-command.*ENOENT/,
    );
  });

  it('refuses a bad config, naming the key', () => {
    expect(() => reboot({ maxTasks: 0 })).toThrow(ConfigError);
    expect(() => reboot({ maxTasks: 1.5 })).toThrow('plugins.reboot.maxTasks');
    expect(() => reboot({ maxLifetime: 0 })).toThrow('plugins.reboot.maxLifetime');
    expect(() => reboot({ rebootCommand: [] })).toThrow('plugins.reboot.rebootCommand');
    expect(() => reboot({ allowTaskReboots: 'yes' as unknown as boolean })).toThrow(
      'plugins.reboot.allowTaskReboots',
    );
  });

  it('exports a provider the app loads as plugins.reboot', async () => {
    expect(provider).toMatchObject({ kind: 'plugin', name: 'reboot', coreRange: '^0.1.0' });
    const validate = createAjv().compile(provider.configSchema);
    expect(
      validate({
        maxTasks: 10,
        maxLifetime: 86400,
        allowTaskReboots: true,
        rebootCommand: ['sudo', 'reboot'],
      }),
    ).toBe(true);
    expect(validate({ rebootCommand: 'sudo reboot' })).toBe(false);
    expect(validate({ maxTasks: 0 })).toBe(false);
    expect(validate({ taskLimit: 3 })).toBe(false);
    expect((await provider.create({})).name).toBe('reboot');
  });
});
