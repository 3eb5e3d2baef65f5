// The script interface of seed 000, with real child processes and a FakeQueue for the artifact uploads.
import { readdir, readFile } from 'node:fs/promises';
import { BACKING_LOG_NAME, TcwError } from '@tcw/core';
import { runSandbox, startTestWorker } from '@tcw/testing';
import { describe, expect, it } from 'vitest';
import { createScriptEngine } from '../src/index.js';
import { engine } from './helpers.js';

async function processesWith(marker: string): Promise<number> {
  let n = 0;
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0');
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      if (cmd.includes(marker) && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z') n++;
    } catch {
      // gone
    }
  }
  return n;
}

describe('script engine', () => {
  it('passes only the schema keys on stdin, TASK_ID and RUN_ID, and a fresh folder with ./artifacts/', async () => {
    const run = await runSandbox(engine(), { action: 'echo-input', text: 'héllo' });
    const log = await run.log();
    const input = JSON.parse(/input=(.*)\n/.exec(log)![1]!);
    expect(input).toEqual({ action: 'echo-input', text: 'héllo' });
    const env = JSON.parse(/env=(.*)\n/.exec(log)![1]!);
    expect(env).toEqual({ TASK_ID: run.taskId, RUN_ID: '0' });
    const cwd = /cwd=(.*)\n/.exec(log)![1]!;
    expect(cwd).toContain(`task-${run.taskId}-0-`);
    expect(await readdir(cwd)).toEqual(['artifacts']);
    await run.dispose();
    await expect(readdir(cwd)).rejects.toThrow(/ENOENT/);
  });

  it('resolves ./ and ../ parts of the configured command against baseDir (the config folder), not the task folder', async () => {
    const { dirname, basename } = await import('node:path');
    const { fixture, testSchema } = await import('./helpers.js');
    const configured = createScriptEngine({
      command: [process.execPath, `./${basename(fixture)}`],
      schema: testSchema,
      baseDir: dirname(fixture),
    });
    const run = await runSandbox(configured, { action: 'print', text: 'found me' });
    expect(run.result.exitCode).toBe(0);
    expect(await run.log()).toContain('found me');
    await run.dispose();
  });

  it('prefixes stderr lines with [worker:error]', async () => {
    const run = await runSandbox(engine(), { action: 'print-error', text: 'oops' });
    const log = await run.log();
    expect(log).toContain('[worker:error] oops\n[worker:error] second line\n');
    await run.dispose();
  });

  it('enforces the schema, including its required list', async () => {
    await expect(runSandbox(engine(), { text: 'no action' })).rejects.toThrow('/action: is required');
    await expect(runSandbox(engine(), { action: 'rm -rf /' })).rejects.toThrow(/\/action: must be one of/);
  });

  it('refuses a schema whose root is not an object', () => {
    expect(() => createScriptEngine({ command: ['x'], schema: { type: 'array' } })).toThrow(
      /root is `type: object`/,
    );
    expect(() => createScriptEngine({ command: [], schema: { type: 'object' } })).toThrow(/command/);
  });

  it.each([
    [0, true, undefined],
    [1, false, undefined],
    [2, false, 'ERR_MALFORMED_PAYLOAD'],
    [3, false, 'ERR_INTERNAL'],
    [4, false, 'ERR_FATAL'],
    [5, false, 'ERR_INTERNAL'],
    [42, false, 'ERR_INTERNAL'],
  ])('exit code %i → success %s, error %s', async (exitCode, success, code) => {
    const run = await runSandbox(engine(), { action: 'none', exitCode });
    expect(run.result.success).toBe(success);
    expect(run.result.exitCode).toBe(exitCode);
    expect(run.result.error ? (run.result.error as TcwError).code : undefined).toBe(code);
    if (code) expect(TcwError.isInstance(run.result.error)).toBe(true);
    await run.dispose();
  });

  it('abort sends SIGKILL to the whole tree, setsid grandchildren included', async () => {
    const seconds = 900 + Math.floor(Math.random() * 99);
    const marker = String(seconds);
    const run = await runSandbox(
      engine(),
      { action: 'sleep', seconds },
      {
        onStarted: async (sandbox) => {
          for (let i = 0; i < 100 && (await processesWith(marker)) < 2; i++)
            await new Promise((r) => setTimeout(r, 20));
          expect(await processesWith(marker)).toBeGreaterThanOrEqual(2);
          await sandbox.abort();
        },
      },
    );
    expect(run.result.aborted).toBe(true);
    expect(run.result.success).toBe(false);
    for (let i = 0; i < 100 && (await processesWith(marker)) > 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(await processesWith(marker)).toBe(0);
    await run.dispose();
  });

  it('uploads ./artifacts/public/… as public and other files as private artifacts', async () => {
    const run = await runSandbox(engine(), {
      action: 'write-files',
      files: {
        'artifacts/public/report.txt': 'public report',
        'artifacts/secret/key.txt': 'private',
        'scratch.txt': 'not an artifact',
      },
    });
    expect(run.result.success).toBe(true);
    expect(run.queue.artifactData(run.taskId, 'public/report.txt').toString()).toBe('public report');
    expect(run.queue.artifactData(run.taskId, 'secret/key.txt').toString()).toBe('private');
    expect([...run.queue.artifacts(run.taskId).keys()].sort()).toEqual([
      'public/report.txt',
      'secret/key.txt',
    ]);
    await run.dispose();
  });

  it('refuses a symlink out of the task folder (error artifact), and still uploads the rest', async () => {
    const run = await runSandbox(engine(), { action: 'symlink-escape' });
    const artifacts = run.queue.artifacts(run.taskId);
    expect(artifacts.get('public/passwd')).toMatchObject({
      storageType: 'error',
      reason: 'invalid-resource-on-worker',
    });
    expect(run.queue.artifactData(run.taskId, 'public/ok.txt').toString()).toBe('fine');
    expect(await run.log()).toMatch(/artifact public\/passwd refused: .*leaves the task directory/);
    await run.dispose();
  });

  it('never puts payload data on the command line', async () => {
    const marker = `payload-marker-${Date.now()}`;
    const run = await runSandbox(engine(), { action: 'sleep', seconds: 0.3, text: marker });
    expect(await processesWith(marker)).toBe(0);
    await run.dispose();
  });
});

describe('script engine in a worker', () => {
  it('resolves by exit code; exit 4 stops the worker after resolving', async () => {
    const tw = await startTestWorker({ engine: engine() });
    expect((await tw.run({ action: 'none', exitCode: 0 })).resolution).toBe('completed');
    expect((await tw.run({ action: 'none', exitCode: 1 })).resolution).toBe('failed');
    const malformed = await tw.run({ action: 'print-error', text: 'binaryToSign is not a URL', exitCode: 2 });
    expect(malformed.resolution).toBe('exception/malformed-payload');
    expect(malformed.log).toContain('[worker:error] binaryToSign is not a URL');
    expect((await tw.run({ action: 'none', exitCode: 3 })).resolution).toBe('exception/internal-error');
    expect(tw.worker.stopping).toBe(false);
    const fatal = await tw.run({ action: 'none', exitCode: 4 });
    expect(fatal.resolution).toBe('exception/internal-error');
    expect(fatal.artifacts.get(BACKING_LOG_NAME)?.present).toBe(true);
    const exit = await tw.exited;
    expect(exit.fatal).toBe(true);
  });

  it('a payload that violates the schema is malformed-payload naming the field, and the script never starts', async () => {
    const tw = await startTestWorker({ engine: engine() });
    const result = await tw.run({ action: 'print', text: 42 });
    await tw.stop();
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('/text: must be string');
    expect(result.log).not.toContain('[worker:error]');
  });
});
