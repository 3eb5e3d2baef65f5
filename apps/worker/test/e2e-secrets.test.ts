// `{$secret: NAME, key: K}` config values, read from the deployment's secrets service (here `tcw queue` with a
// configured secret) with the worker's own credentials; real processes, real HTTP.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import taskcluster from 'taskcluster-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify as stringifyYaml } from 'yaml';
import {
  BACKING_LOG,
  cleanup,
  downloadText,
  type QueueProc,
  scriptConfig,
  startQueue,
  taskDefinition,
  tcw,
  tempDir,
  waitForResolution,
  writeConfig,
} from './helpers.js';

describe('{$secret} values against a deployment', () => {
  let dir: string;
  let queue: QueueProc;
  let markers: string;
  const taskQueueId = 'tcw-e2e/secret';

  beforeAll(async () => {
    dir = await tempDir('tcw-e2e-secret-');
    markers = join(dir, 'markers-from-secret');
    await mkdir(markers);
    // YAML: `tcw queue --config` takes YAML or JSON (e2e-plugins-ops uses JSON)
    const queueConfig = join(dir, 'queue.yml');
    await writeFile(
      queueConfig,
      stringifyYaml({
        secrets: {
          'worker/e2e': {
            markerDir: markers,
            token: 's3cr3t-t0ken',
            workerId: 'from-a-secret',
            badId: 'has spaces',
          },
        },
      }),
    );
    queue = await startQueue(join(dir, 'queue'), ['--config', queueConfig]);
  });

  afterAll(async () => {
    queue?.kill('SIGTERM');
    await queue?.exited;
    await cleanup(dir);
  });

  const configWith = async (name: string, markerDir: unknown) => {
    const config = scriptConfig({
      queue,
      markerDir: 'unused',
      workDir: join(dir, `work-${name}`),
      taskQueueId,
    });
    const engines = config.engines as { script: { env: Record<string, unknown> } };
    engines.script.env.MARKER_DIR = markerDir;
    return writeConfig(await mkdir(join(dir, name), { recursive: true }).then(() => join(dir, name)), config);
  };

  it('a $secret value is fetched at start and used: the task writes its marker where the secret says', async () => {
    const config = await configWith('ok', { $secret: 'worker/e2e', key: 'markerDir' });
    const check = tcw(['config', 'check', config]);
    expect(await check.exited).toBe(0);
    const worker = tcw(['start', '--config', config]);
    try {
      await worker.waitFor(/worker started/);
      const taskId = taskcluster.slugid();
      await queue.queue.createTask(taskId, taskDefinition(taskQueueId, { exitCode: 0 }));
      expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
      expect(await readFile(join(markers, taskId), 'utf8')).toMatch(/^start \d+\nend \d+\n$/);
      // the secret's other values never reach the worker's logs
      expect(worker.stderr()).not.toContain('s3cr3t-t0ken');
    } finally {
      worker.kill('SIGTERM');
      await worker.exited;
    }
  });

  it("a $secret value is masked in task logs, also when the task writes it; the worker's token too", async () => {
    const path = await configWith('masked', markers);
    const config = parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    const engines = config.engines as { script: { env: Record<string, unknown> } };
    engines.script.env.TCW_E2E_TOKEN = { $secret: 'worker/e2e', key: 'token' };
    await writeFile(path, stringifyYaml(config));
    const worker = tcw(['start', '--config', path]);
    try {
      await worker.waitFor(/worker started/);
      const taskId = taskcluster.slugid();
      await queue.queue.createTask(
        taskId,
        taskDefinition(taskQueueId, {
          stdout: `the token is s3cr3t-t0ken; the worker's is ${queue.credentials.accessToken}`,
          stderr: 'stderr says s3cr3t-t0ken',
        }),
      );
      expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
      const log = await downloadText(queue.queue, taskId, BACKING_LOG);
      expect(log).toContain("the token is [secret]; the worker's is [secret]");
      expect(log).toContain('[worker:error] stderr says [secret]');
      expect(log).not.toContain('s3cr3t-t0ken');
      expect(log).not.toContain(queue.credentials.accessToken);
    } finally {
      worker.kill('SIGTERM');
      await worker.exited;
    }
  });

  it('a $secret may stand anywhere a value is checked by type, e.g. worker.workerId', async () => {
    const config = scriptConfig({ queue, markerDir: markers, workDir: join(dir, 'work-id'), taskQueueId });
    (config.worker as Record<string, unknown>).workerId = { $secret: 'worker/e2e', key: 'workerId' };
    const path = await writeConfig(
      await mkdir(join(dir, 'id'), { recursive: true }).then(() => join(dir, 'id')),
      config,
    );
    const worker = tcw(['start', '--config', path]);
    try {
      await worker.waitFor(/worker started/);
      const taskId = taskcluster.slugid();
      await queue.queue.createTask(taskId, taskDefinition(taskQueueId, { exitCode: 0 }));
      const status = await waitForResolution(queue.queue, taskId);
      expect(status.state).toBe('completed');
      expect((status.runs[0] as { workerId?: string }).workerId).toBe('from-a-secret');
    } finally {
      worker.kill('SIGTERM');
      await worker.exited;
    }
    // a bad value from a secret is named like any other
    (config.worker as Record<string, unknown>).workerId = { $secret: 'worker/e2e', key: 'badId' };
    await writeConfig(join(dir, 'id'), config);
    const bad = tcw(['config', 'check', path]);
    expect(await bad.exited).toBe(64);
    expect(bad.stderr()).toContain('worker.workerId: must match pattern');
  });

  it('rootUrl and credentials cannot come from $secret (they reach the secrets service)', async () => {
    const config = scriptConfig({ queue, markerDir: markers, workDir: join(dir, 'work-circ'), taskQueueId });
    // a copy: scriptConfig shares the queue's credentials object
    config.credentials = { ...queue.credentials, accessToken: { $secret: 'worker/e2e', key: 'token' } };
    const path = await writeConfig(
      await mkdir(join(dir, 'circ'), { recursive: true }).then(() => join(dir, 'circ')),
      config,
    );
    const check = tcw(['config', 'check', path]);
    expect(await check.exited).toBe(64);
    expect(check.stderr()).toContain('credentials.accessToken: cannot come from $secret');
  });

  it('a missing secret or key is a config error naming the path', async () => {
    const noKey = await configWith('no-key', { $secret: 'worker/e2e', key: 'nope' });
    const a = tcw(['config', 'check', noKey]);
    expect(await a.exited).toBe(64);
    expect(a.stderr()).toContain('engines.script.env.MARKER_DIR');
    const noSecret = await configWith('no-secret', { $secret: 'worker/absent', key: 'markerDir' });
    const b = tcw(['config', 'check', noSecret]);
    expect(await b.exited).toBe(64);
    expect(b.stderr()).toContain('engines.script.env.MARKER_DIR');
    expect(b.stderr()).toContain('worker/absent');
  });
});
