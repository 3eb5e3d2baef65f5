// `tcw queue` in a real child process: export lines on stdout, config file, SIGTERM → exit 0.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { expectStatus, taskcluster, taskDef } from './helpers.js';

const SCRIPT = fileURLToPath(new URL('./fixtures/queue-command.mjs', import.meta.url));

function run(args: string[]) {
  const proc = spawn(process.execPath, [SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const lines: string[] = [];
  const rl = createInterface({ input: proc.stdout });
  const threeLines = new Promise<string[]>((resolve, reject) => {
    rl.on('line', (l) => {
      lines.push(l);
      if (lines.length === 3) resolve(lines);
    });
    exited.then((code) => reject(new Error(`exited ${code} early: ${stderr}`)));
  });
  threeLines.catch(() => {}); // awaited only by the tests that expect a start
  return { proc, exited, threeLines, stderr: () => stderr };
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe('tcw queue (runQueueCommand)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'local-queue-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prints export lines for the root client, serves the configured clients and secrets, exits 0 on SIGTERM', async () => {
    const configFile = join(dir, 'queue.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        claimWorkTimeout: 1,
        clients: [
          {
            clientId: 'reader',
            accessToken: 'reader-token-0123456789abcdefghijklmnopqrst',
            scopes: ['secrets:get:*'],
          },
        ],
        secrets: { 'worker-pool:local-test/cli': { password: 'hunter2' } },
      }),
    );
    const port = await freePort();
    const child = run(['--state-dir', join(dir, 'state'), '--config', configFile, '--port', String(port)]);
    const lines = await child.threeLines;
    const env: Record<string, string> = {};
    for (const line of lines) {
      const m = /^export (TASKCLUSTER_[A-Z_]+)=(.*)$/.exec(line);
      expect(m).not.toBeNull();
      env[m![1]!] = m![2]!.replace(/^'(.*)'$/, '$1');
    }
    expect(Object.keys(env)).toEqual([
      'TASKCLUSTER_ROOT_URL',
      'TASKCLUSTER_CLIENT_ID',
      'TASKCLUSTER_ACCESS_TOKEN',
    ]);
    expect(env.TASKCLUSTER_ROOT_URL).toBe(`http://127.0.0.1:${port}`);
    const creds = { clientId: env.TASKCLUSTER_CLIENT_ID!, accessToken: env.TASKCLUSTER_ACCESS_TOKEN! };
    const queue = new taskcluster.Queue({
      rootUrl: env.TASKCLUSTER_ROOT_URL!,
      credentials: creds,
      retries: 0,
    });
    const taskId = taskcluster.slugid();
    const res = await queue.createTask(taskId, taskDef({ taskQueueId: 'local-test/cli' }));
    expect(res.status.state).toBe('pending');
    const reader = new taskcluster.Secrets({
      rootUrl: env.TASKCLUSTER_ROOT_URL!,
      credentials: { clientId: 'reader', accessToken: 'reader-token-0123456789abcdefghijklmnopqrst' },
      retries: 0,
    });
    expect((await reader.get('worker-pool:local-test/cli')).secret).toEqual({ password: 'hunter2' });
    await expectStatus(
      new taskcluster.Queue({
        rootUrl: env.TASKCLUSTER_ROOT_URL!,
        credentials: { clientId: 'reader', accessToken: 'reader-token-0123456789abcdefghijklmnopqrst' },
        retries: 0,
      }).createTask(taskcluster.slugid(), taskDef()),
      403,
    );
    expect(child.stderr()).not.toContain(creds.accessToken);
    child.proc.kill('SIGTERM');
    expect(await child.exited).toBe(0);

    // restarted on the same state directory: same root client, same task
    const again = run(['--state-dir', join(dir, 'state')]);
    const lines2 = await again.threeLines;
    expect(lines2[1]).toBe(lines[1]);
    expect(lines2[2]).toBe(lines[2]);
    const rootUrl2 = lines2[0]!.replace(/^export TASKCLUSTER_ROOT_URL=/, '');
    const status = await new taskcluster.Queue({ rootUrl: rootUrl2, credentials: creds, retries: 0 }).status(
      taskId,
    );
    expect(status.status.state).toBe('pending');
    again.proc.kill('SIGINT');
    expect(await again.exited).toBe(0);
  });

  it('rejects bad arguments (exit 2) and a bad config file (exit 1), naming the problem', async () => {
    const bad = run(['--port', 'abc']);
    expect(await bad.exited).toBe(2);
    expect(bad.stderr()).toContain('--port');
    const unknown = run(['--frobnicate']);
    expect(await unknown.exited).toBe(2);
    expect(unknown.stderr()).toContain('--frobnicate');
    const cfg = join(dir, 'broken.json');
    writeFileSync(cfg, '{"clients": [{"clientId": "x"}]}');
    const broken = run(['--state-dir', join(dir, 'state2'), '--config', cfg]);
    expect(await broken.exited).toBe(1);
    expect(broken.stderr()).toContain('/clients/0/accessToken');
  });
});
