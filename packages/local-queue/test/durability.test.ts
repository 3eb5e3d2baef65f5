// SIGKILL the queue process mid-run and restart it on the same state directory: nothing acknowledged is lost.
// The queue runs as a real child process (the built package), killed with a real SIGKILL.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { sink, taskcluster, taskDef, WORKER } from './helpers.js';

const SCRIPT = fileURLToPath(new URL('./fixtures/queue-process.mjs', import.meta.url));

interface Child {
  proc: ChildProcess;
  rootUrl: string;
  root: { clientId: string; accessToken: string };
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startChild(stateDir: string): Promise<Child> {
  const proc = spawn(process.execPath, [SCRIPT, stateDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! });
    rl.once('line', resolve);
    exited.then(({ code, signal }) =>
      reject(new Error(`queue process exited (${code ?? signal}) before listening: ${stderr}`)),
    );
  });
  const info = JSON.parse(line) as { rootUrl: string; clientId: string; accessToken: string };
  return {
    proc,
    rootUrl: info.rootUrl,
    root: { clientId: info.clientId, accessToken: info.accessToken },
    exited,
  };
}

const client = (kind: string, rootUrl: string, credentials: object) =>
  new (taskcluster as any)[kind]({ rootUrl, credentials, retries: 0 });

describe('local queue: durability across SIGKILL', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'local-queue-durable-'));
  const children: Child[] = [];
  afterAll(() => {
    for (const c of children)
      if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('keeps tasks, runs, artifacts and bytes; the run can be reclaimed and resolved after restart', async () => {
    const first = await startChild(stateDir);
    children.push(first);
    expect(statSync(join(stateDir, 'root-credentials.json')).mode & 0o777).toBe(0o600);
    const root = client('Queue', first.rootUrl, first.root);
    const worker = client('Queue', first.rootUrl, WORKER);

    const taskId = taskcluster.slugid();
    await root.createTask(taskId, taskDef());
    const claimed = await worker.claimWork('local-test/flow', {
      workerGroup: 'test-group',
      workerId: 'w1',
      tasks: 1,
    });
    expect(claimed.tasks).toHaveLength(1);
    const reclaimed = await client('Queue', first.rootUrl, claimed.tasks[0].credentials).reclaimTask(
      taskId,
      0,
    );
    const taskQueue = client('Queue', first.rootUrl, reclaimed.credentials);
    const bytes = randomBytes(50_000);
    const art = await taskQueue.createArtifact(taskId, 0, 'public/data.bin', {
      storageType: 'object',
      expires: taskcluster.fromNowJSON('1 day'),
      contentType: 'application/octet-stream',
      contentLength: bytes.length,
    });
    await taskcluster.upload({
      projectId: art.projectId,
      name: art.name,
      uploadId: art.uploadId,
      expires: new Date(art.expires),
      contentType: 'application/octet-stream',
      contentLength: bytes.length,
      streamFactory: async () => Readable.from([bytes]),
      object: client('Object', first.rootUrl, art.credentials),
    });
    await taskQueue.finishArtifact(taskId, 0, 'public/data.bin', { uploadId: art.uploadId });
    const before = (await root.status(taskId)).status;

    // a burst of createTask calls, killed in the middle: every acknowledged one must survive
    const acked: string[] = [];
    const burst = Array.from({ length: 60 }, async () => {
      const id = taskcluster.slugid();
      try {
        await root.createTask(id, taskDef({ taskQueueId: 'local-test/burst' }));
        acked.push(id);
        if (acked.length === 10) first.proc.kill('SIGKILL');
      } catch {
        // refused or cut off by the kill: not acknowledged
      }
    });
    await Promise.all(burst);
    const exit = await first.exited;
    expect(exit.signal).toBe('SIGKILL');
    expect(acked.length).toBeGreaterThanOrEqual(10);

    const second = await startChild(stateDir);
    children.push(second);
    expect(second.root).toEqual(first.root);
    const root2 = client('Queue', second.rootUrl, second.root);
    const after = (await root2.status(taskId)).status;
    expect(after).toEqual(before);
    expect(after.runs[0]).toMatchObject({ state: 'running', workerGroup: 'test-group', workerId: 'w1' });
    for (const id of acked) expect((await root2.status(id)).status.state).toBe('pending');

    const list = await root2.listArtifacts(taskId, 0);
    expect(list.artifacts.map((a: { name: string }) => a.name)).toEqual(['public/data.bin']);
    const out = sink();
    await taskcluster.downloadArtifact({
      taskId,
      runId: 0,
      name: 'public/data.bin',
      queue: root2,
      streamFactory: async () => out.stream,
    });
    expect(out.bytes().equals(bytes)).toBe(true);

    // the credentials issued before the kill still work: reclaim, then resolve
    const again = await client('Queue', second.rootUrl, reclaimed.credentials).reclaimTask(taskId, 0);
    const done = await client('Queue', second.rootUrl, again.credentials).reportCompleted(taskId, 0);
    expect(done.status.state).toBe('completed');

    second.proc.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });
});
