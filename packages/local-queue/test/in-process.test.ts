// LocalQueue.client: the embedded worker's in-process calls. They must check credentials and scopes exactly like
// the HTTP API does (a worker in the same process gains nothing), answer and fail in taskcluster-client's shapes,
// and see the same state as HTTP clients (the tasks are created and read back over real HTTP here).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  expectStatus,
  type Harness,
  LIMITED,
  startHarness,
  taskcluster,
  taskDef,
  WORKER,
} from './helpers.js';

describe.each([
  ["on the caller's thread (startLocalQueue)", false],
  ['on its own thread (startLocalQueueThread)', true],
])('local queue %s: in-process clients', (_name, thread) => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness({}, undefined, { thread });
  });
  afterEach(async () => {
    await h.close();
  });

  const client = (...args: Parameters<Harness['queue']['client']>): any => h.queue.client(...args);

  const claimInProcess = async () => {
    const worker = client('queue', WORKER);
    const res = await worker.claimWork('local-test/flow', {
      workerGroup: 'test-group',
      workerId: 'w1',
      tasks: 1,
    });
    expect(res.tasks).toHaveLength(1);
    return res.tasks[0];
  };

  it('runs the worker flow in-process with the task credentials, seen over HTTP', async () => {
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef());
    const claim = await claimInProcess();
    expect(claim.status.taskId).toBe(taskId);
    expect(claim.credentials.certificate).toEqual(expect.any(String));
    const task = client('queue', claim.credentials);
    const object = client('object', claim.credentials);

    const created = await task.createArtifact(taskId, '0', 'public/hello.txt', {
      storageType: 'object',
      expires: claim.task.expires,
      contentType: 'text/plain',
    });
    expect(created).toMatchObject({ storageType: 'object', name: expect.any(String) });
    const data = Buffer.from('hello, in-process\n');
    const upload = { projectId: created.projectId, uploadId: created.uploadId, expires: created.expires };
    const up = await client('object', created.credentials).createUpload(created.name, {
      ...upload,
      proposedUploadMethods: {
        dataInline: { contentType: 'text/plain', objectData: data.toString('base64') },
      },
    });
    expect(up.uploadMethod).toEqual({ dataInline: true });
    await client('object', created.credentials).finishUpload(created.name, upload);
    await task.finishArtifact(taskId, '0', 'public/hello.txt', { uploadId: created.uploadId });
    await task.reportCompleted(taskId, '0');

    // HTTP clients see it all
    expect((await h.root.status(taskId)).status.state).toBe('completed');
    const dl = await h
      .client('Object')
      .startDownload(created.name, { acceptDownloadMethods: { simple: true } });
    expect(await (await fetch(dl.url)).text()).toBe(data.toString());
    const listed = await h.root.listArtifacts(taskId, '0');
    expect(listed.artifacts.map((a: { name: string }) => a.name)).toContain('public/hello.txt');
    // the object client was only used with the artifact's credentials: the task credentials may not create one
    await expectStatus(object.createUpload('other/object', { ...upload, proposedUploadMethods: {} }), 403);
  });

  it('checks credentials: unknown client, wrong token and a forged certificate are 401', async () => {
    const unknown = client('queue', { clientId: 'nobody', accessToken: 'x'.repeat(44) });
    const e1 = await expectStatus(unknown.status('aaaaaaaaaaaaaaaaaaaaaa'), 401);
    expect(e1.code).toBe('AuthenticationFailed');
    const wrong = client('queue', { ...WORKER, accessToken: `${WORKER.accessToken.slice(1)}x` });
    await expectStatus(
      wrong.claimWork('local-test/flow', { workerGroup: 'test-group', workerId: 'w1', tasks: 1 }),
      401,
    );
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef());
    const claim = await claimInProcess();
    const cert = JSON.parse(claim.credentials.certificate);
    cert.scopes.push('*');
    const forged = client('queue', { ...claim.credentials, certificate: JSON.stringify(cert) });
    await expectStatus(forged.reportCompleted(taskId, '0'), 401);
  });

  it('checks scopes: a limited client and another task are refused with 403', async () => {
    const limited = client('queue', LIMITED);
    const e = await expectStatus(
      limited.claimWork('local-test/flow', { workerGroup: 'test-group', workerId: 'w1', tasks: 1 }),
      403,
    );
    expect(e.code).toBe('InsufficientScopes');
    expect(e.message).toMatch(/queue:claim-work:local-test\/flow/);
    const first = taskcluster.slugid();
    const second = taskcluster.slugid();
    await h.root.createTask(first, taskDef());
    await h.root.createTask(second, taskDef());
    const claim = await claimInProcess();
    const other = claim.status.taskId === first ? second : first;
    // the first claim's credentials cannot resolve the other task, claimed or not
    const task = client('queue', claim.credentials);
    await expectStatus(task.reportCompleted(other, '0'), 403);
    // the worker's own credentials are not enough to resolve a task either (task credentials are)
    await expectStatus(client('queue', WORKER).reportCompleted(claim.status.taskId, '0'), 403);
    // anonymous (no credentials) gets the anonymous scopes only
    const anon = client('queue');
    expect((await anon.status(first)).status.taskId).toBe(first);
    await expectStatus(anon.createTask(taskcluster.slugid(), taskDef()), 403);
  });

  it('answers 409 once the run is over, 400 for bad input naming the field, and copies answers', async () => {
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef());
    const claim = await claimInProcess();
    const task = client('queue', claim.credentials);
    await task.reportFailed(taskId, '0');
    const conflict = await expectStatus(task.reportCompleted(taskId, '0'), 409);
    expect(conflict.code).toBe('RequestConflict');
    const bad = await expectStatus(
      client('queue', WORKER).claimWork('local-test/flow', { workerGroup: 'test-group', tasks: 1 }),
      400,
    );
    expect(bad.message).toMatch(/\/workerId/);
    const root = client('queue', h.queue.rootCredentials);
    const def = await root.task(taskId);
    def.payload.command = ['changed'];
    expect((await root.task(taskId)).payload.command).toEqual(['true']);
  });

  it('obeys injected faults: 5xx are retried, 4xx are not', async () => {
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef());
    h.queue.injectFaults({ route: 'queue.claimWork', count: 2 });
    const claim = await claimInProcess();
    expect(claim.status.taskId).toBe(taskId);
    h.queue.injectFaults({ route: 'reportCompleted', status: 400 });
    const task = client('queue', claim.credentials);
    await expectStatus(task.reportCompleted(taskId, '0'), 400);
    await task.reportCompleted(taskId, '0');
    h.queue.injectFaults({ route: 'status', count: 3 });
    await expectStatus(client('queue', WORKER, { retries: 1 }).status(taskId), 500);
  });

  it('forwards events to listeners and serves HTTP clients from the same state', async () => {
    const seen: string[] = [];
    h.queue.events.on('task-pending', (m: { taskId: string }) => seen.push(`pending ${m.taskId}`));
    h.queue.events.on('task-completed', (m: { taskId: string; status: { state: string } }) =>
      seen.push(`completed ${m.taskId} ${m.status.state}`),
    );
    await new Promise((r) => setTimeout(r, 50)); // subscriptions reach the queue's thread
    const taskId = taskcluster.slugid();
    await client('queue', h.queue.rootCredentials).createTask(taskId, taskDef());
    const claim = await claimInProcess();
    await client('queue', claim.credentials).reportCompleted(taskId, '0');
    expect((await h.root.status(taskId)).status.state).toBe('completed');
    const ids = await h.queue.createTasks(3, { taskQueueId: 'local-test/bulk' });
    expect(ids).toHaveLength(3);
    expect((await h.root.status(ids[0]!)).status.state).toBe('pending');
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual(expect.arrayContaining([`pending ${taskId}`, `completed ${taskId} completed`]));
  });

  it('refuses calls once closed', async () => {
    await h.queue.close();
    expect(() => h.queue.client('queue')).toThrow(/closed/);
  });
});

describe('local queue: schema version 1 state', () => {
  it('is migrated when opened: inline objects then live in the database, older objects keep their files', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { DatabaseSync } = await import('node:sqlite');
    const dir = mkdtempSync(join(tmpdir(), 'local-queue-v1-'));
    try {
      // make a version 1 database: the same tables, without objects.data
      const first = await startHarness({}, dir);
      const taskId = taskcluster.slugid();
      await first.root.createTask(taskId, taskDef());
      await first.close();
      const db = new DatabaseSync(join(dir, 'queue.sqlite'));
      db.exec(
        "ALTER TABLE objects DROP COLUMN data; UPDATE meta SET value = '1' WHERE key = 'schema_version'",
      );
      db.close();

      const h = await startHarness({}, dir);
      try {
        expect((await h.root.status(taskId)).status.state).toBe('pending');
        const res = await h.worker.claimWork('local-test/flow', {
          workerGroup: 'test-group',
          workerId: 'w1',
          tasks: 1,
        });
        const claim = res.tasks[0];
        const q = h.client('Queue', claim.credentials);
        const art = await q.createArtifact(taskId, 0, 'public/small.txt', {
          storageType: 'object',
          expires: claim.task.expires,
          contentType: 'text/plain',
        });
        const upload = { projectId: art.projectId, uploadId: art.uploadId, expires: art.expires };
        const obj = h.client('Object', art.credentials);
        await obj.createUpload(art.name, {
          ...upload,
          proposedUploadMethods: {
            dataInline: { contentType: 'text/plain', objectData: Buffer.from('tiny').toString('base64') },
          },
        });
        await obj.finishUpload(art.name, upload);
        await q.finishArtifact(taskId, 0, 'public/small.txt', { uploadId: art.uploadId });
        const dl = await h
          .client('Object')
          .startDownload(art.name, { acceptDownloadMethods: { simple: true } });
        const got = await fetch(dl.url);
        expect(got.headers.get('content-length')).toBe('4');
        expect(await got.text()).toBe('tiny');
        const { readdirSync } = await import('node:fs');
        expect(readdirSync(join(dir, 'objects'))).toEqual([]); // no file for an inline object
      } finally {
        await h.close();
      }
      // (read once the queue closed: while it runs, it owns the database)
      const version = new DatabaseSync(join(dir, 'queue.sqlite'), { readOnly: true });
      expect(version.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get()).toEqual({
        value: '2',
      });
      version.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
