// Running containers on a real dockerd: exit codes, live output, env, volumes, files, extraction, labels, removal.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { MalformedPayloadError, silentLogger, TaskLog } from '@tcw/core';
import { runSandbox } from '@tcw/testing';
import { describe, expect, it } from 'vitest';
import { containersOfTask, dockerCli, engine, IMAGE, sh, taskInfo } from './helpers.js';

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

describe('docker engine: running tasks', () => {
  it.each([0, 1, 3, 42])('exit code %i → success only for 0, the code as given', async (code) => {
    const run = await runSandbox(engine(), sh(`exit ${code}`));
    expect(run.result.exitCode).toBe(code);
    expect(run.result.success).toBe(code === 0);
    expect(run.result.error).toBeUndefined();
    await run.dispose();
  });

  it('stdout and stderr reach the log demultiplexed, in the order written', async () => {
    const run = await runSandbox(
      engine(),
      sh('echo out-1; sleep 0.2; echo err-1 >&2; sleep 0.2; echo out-2; sleep 0.2; echo err-2 >&2'),
    );
    const log = await run.log();
    expect(log).toContain('out-1\nerr-1\nout-2\nerr-2\n');
    // no docker stream headers (8-byte frames) leak into the log
    expect([...log].some((c) => c.charCodeAt(0) < 9)).toBe(false);
    await run.dispose();
  });

  it('output is in the log while the task still runs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tcw-docker-live-'));
    const log = TaskLog.create(join(dir, 'log'));
    const builder = await engine().newSandboxBuilder({
      task: taskInfo('LiveLogTaskAAAAAAAAAAA'),
      payload: sh('echo early-line; sleep 60'),
      log,
      signal: new AbortController().signal,
      logger: silentLogger,
      artifacts: undefined as never,
    });
    const sandbox = await builder.start();
    const reader = log.createReader();
    let seen = '';
    for await (const chunk of reader) {
      seen += String(chunk);
      if (seen.includes('early-line')) break;
    }
    // the task is still running: it sleeps for a minute, and only now is it aborted
    await sandbox.abort({ graceMs: 0 });
    const result = await sandbox.wait();
    expect(result.aborted).toBe(true);
    expect(seen).toContain('early-line');
    await result.dispose();
    await log.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("the image's default command runs when the payload has none", async () => {
    // the test image's CMD is /bin/sh, which exits 0 at once without input
    const run = await runSandbox(engine(), { image: IMAGE });
    expect(run.result.success).toBe(true);
    await run.dispose();
  });

  it('a command that does not exist fails the task (127) with dockerd’s message in the log', async () => {
    const run = await runSandbox(engine(), { image: IMAGE, command: ['no-such-command-xyz'] });
    expect(run.result.success).toBe(false);
    expect(run.result.exitCode).toBe(127);
    expect(await run.log()).toMatch(/the container did not start: .*no-such-command-xyz/);
    await run.dispose();
  });

  it('env: setEnv values, TASK_ID and RUN_ID, and the image’s PATH', async () => {
    const run = await runSandbox(engine(), sh('echo "A=$A"; echo "T=$TASK_ID R=$RUN_ID"; echo "P=$PATH"'), {
      configure: (b) => b.setEnv('A', 'it\'s = "quoted" $HOME'),
    });
    const log = await run.log();
    expect(log).toContain(`A=it's = "quoted" $HOME\n`);
    expect(log).toContain(`T=${run.taskId} R=0\n`);
    expect(log).toContain('P=/bin\n');
    await run.dispose();
  });

  it('env: a bad name names the variable', async () => {
    const error = await runSandbox(engine(), sh('true'), { configure: (b) => b.setEnv('A-B', 'x') }).catch(
      (e: unknown) => e,
    );
    expect(MalformedPayloadError.isMalformedPayload(error)).toBe(true);
    expect((error as Error).message).toContain('/env/A-B');
  });

  it('volumes: read-write and read-only mounts; clashing mount points are refused', async () => {
    const rw = await mkdtemp(join(tmpdir(), 'tcw-docker-rw-'));
    const ro = await mkdtemp(join(tmpdir(), 'tcw-docker-ro-'));
    await writeFile(join(ro, 'in.txt'), 'read me');
    const run = await runSandbox(
      engine(),
      sh('cat /mnt/ro/in.txt; echo written > /mnt/rw/out.txt; echo x > /mnt/ro/no.txt || echo ro-refused'),
      {
        configure: (b) => {
          b.attachVolume('/mnt/rw', { hostPath: rw, readOnly: false });
          b.attachVolume('/mnt/ro', { hostPath: ro, readOnly: true });
        },
      },
    );
    const log = await run.log();
    expect(log).toContain('read me');
    expect(log).toContain('ro-refused');
    expect(await readFile(join(rw, 'out.txt'), 'utf8')).toBe('written\n');
    await run.dispose();
    const clash = await runSandbox(engine(), sh('true'), {
      configure: (b) => {
        b.attachVolume('/mnt/a', { hostPath: rw, readOnly: false });
        b.attachVolume('/mnt/a/b', { hostPath: ro, readOnly: false });
      },
    }).catch((e: unknown) => e);
    expect(MalformedPayloadError.isMalformedPayload(clash)).toBe(true);
    expect(String(clash)).toContain('clashes with /mnt/a');
    await rm(rw, { recursive: true, force: true });
    await rm(ro, { recursive: true, force: true });
  });

  it('writeFile puts files in the container before it starts', async () => {
    const run = await runSandbox(engine(), sh('cat /etc/tcw/config.json; ls -l /etc/tcw/run.sh'), {
      configure: async (b) => {
        await b.writeFile('/etc/tcw/config.json', '{"a":1}');
        await b.writeFile('/etc/tcw/run.sh', 'echo hi', 0o755);
      },
    });
    const log = await run.log();
    expect(log).toContain('{"a":1}');
    expect(log).toMatch(/-rwxr-xr-x .*run\.sh/);
    await run.dispose();
  });

  it('extraction streams files and folders out of the stopped container', async () => {
    const run = await runSandbox(
      engine(),
      sh(
        'mkdir -p /out/sub /out/empty && echo a > /out/a.txt && echo b > /out/sub/b.txt && ln -s /etc/passwd /out/link ' +
          '&& ln -s /out/a.txt /alias && head -c 3000000 /dev/zero > /out/big.bin',
      ),
    );
    expect(run.result.success).toBe(true);
    const file = await run.result.extractFile!('/out/a.txt');
    expect(file.size).toBe(2);
    expect(await readAll(file.stream)).toBe('a\n');
    // a symlink to a file is followed inside the container
    expect(await readAll((await run.result.extractFile!('/alias')).stream)).toBe('a\n');
    const seen: Record<string, string | number> = {};
    await run.result.extractFolder!('/out', async (rel, f) => {
      if ('refused' in f) seen[rel] = `refused: ${f.refused}`;
      else if (rel === 'big.bin') seen[rel] = (await readAll(f.stream)).length;
      else seen[rel] = await readAll(f.stream);
    });
    expect(seen).toEqual({
      'a.txt': 'a\n',
      'sub/b.txt': 'b\n',
      'big.bin': 3_000_000,
      link: 'refused: a symbolic link (to /etc/passwd) is not followed',
    });
    // a missing file: ENOENT; a folder where a file is wanted and the reverse: malformed payload
    await expect(run.result.extractFile!('/out/missing')).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(run.result.extractFile!('/out/sub')).rejects.toThrow(/not a regular file/);
    await expect(run.result.extractFolder!('/out/a.txt', async () => {})).rejects.toThrow(/not a directory/);
    await expect(run.result.extractFile!('relative.txt')).rejects.toThrow(/absolute/);
    await run.dispose();
  });

  it('labels name the worker and the task; the container is removed after the task', async () => {
    let labels: Record<string, string> = {};
    const marker = `${30 + Math.floor(Math.random() * 1000)}`;
    const run = await runSandbox(engine(), sh(`sleep ${marker}`), {
      onStarted: async (sandbox) => {
        const line = dockerCli(
          'ps',
          '--no-trunc',
          '--filter',
          'label=tcw.engine=docker',
          '--format',
          '{{.ID}} {{.Command}}',
        )
          .split('\n')
          .find((l) => l.includes(`sleep ${marker}`));
        const id = line!.split(' ')[0]!;
        labels = JSON.parse(dockerCli('inspect', '--format', '{{json .Config.Labels}}', id!));
        await sandbox.abort({ graceMs: 0 });
      },
    });
    expect(labels).toEqual({
      'tcw.engine': 'docker',
      'tcw.worker': 'tcw-test/fake/g/w',
      'tcw.task-id': run.taskId,
      'tcw.run-id': '0',
    });
    expect(containersOfTask(run.taskId)).toHaveLength(1);
    await run.dispose();
    expect(containersOfTask(run.taskId)).toEqual([]);
  });
});
