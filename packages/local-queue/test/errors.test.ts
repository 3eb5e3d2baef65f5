// Error cases of the protocol reference, over real HTTP with taskcluster-client@87.1.3 (public entry only).
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  claimOne,
  expectStatus,
  type Harness,
  LIMITED,
  nextEvent,
  sink,
  startHarness,
  taskcluster,
  taskDef,
  WORKER,
} from './helpers.js';

describe('local queue: error cases', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.close();
  });

  it('409 after cancel; the artifact allowance after an exception; 409 once the run is completed', async () => {
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef());
    const claim = await claimOne(h);
    const q = h.client('Queue', claim.credentials);
    const canceled = await h.root.cancelTask(taskId);
    expect(canceled.status.runs[0]).toMatchObject({ state: 'exception', reasonResolved: 'canceled' });
    const e1 = await expectStatus(q.reclaimTask(taskId, 0), 409);
    expect(e1.code).toBe('RequestConflict');
    await expectStatus(q.reportCompleted(taskId, 0), 409);
    await expectStatus(q.reportFailed(taskId, 0), 409);
    // within 25 minutes of the exception, artifacts can still be uploaded
    const expires = taskcluster.fromNowJSON('1 day');
    await q.createArtifact(taskId, 0, 'public/after-cancel.txt', {
      storageType: 'error',
      expires,
      reason: 'file-missing-on-worker',
      message: 'gone',
    });
    // cancel of a resolved task changes nothing and still answers 200
    const again = await h.root.cancelTask(taskId);
    expect(again.status.runs).toHaveLength(1);

    const other = taskcluster.slugid();
    await h.root.createTask(other, taskDef());
    const c2 = await claimOne(h);
    const q2 = h.client('Queue', c2.credentials);
    await q2.reportCompleted(other, 0);
    // idempotent repeat
    const repeat = await q2.reportCompleted(other, 0);
    expect(repeat.status.state).toBe('completed');
    await expectStatus(q2.reportFailed(other, 0), 409);
    await expectStatus(
      q2.createArtifact(other, 0, 'public/late.txt', {
        storageType: 'reference',
        expires,
        url: 'https://example.com',
      }),
      409,
    );
    await expectStatus(q2.reclaimTask(other, 0), 409);
    await expectStatus(q2.reclaimTask(other, 7), 403);
    await expectStatus(h.root.reclaimTask(other, 7), 404);
    await expectStatus(h.root.reclaimTask(taskcluster.slugid(), 0), 404);
  });

  it('cancels an unscheduled task with a synthetic exception run', async () => {
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef({ dependencies: [taskId] }));
    const s = await h.root.status(taskId);
    expect(s.status.state).toBe('unscheduled');
    const res = await h.root.cancelTask(taskId);
    expect(res.status.runs).toEqual([
      {
        runId: 0,
        state: 'exception',
        reasonCreated: 'exception',
        reasonResolved: 'canceled',
        scheduled: expect.any(String),
        resolved: expect.any(String),
      },
    ]);
    expect(res.status.runs[0].scheduled).toBe(res.status.runs[0].resolved);
  });

  it('409 on reclaim past the deadline, then deadline-exceeded', async () => {
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef({ deadline: taskcluster.fromNowJSON('3 seconds') }));
    const claim = await claimOne(h);
    const q = h.client('Queue', claim.credentials);
    const resolved = nextEvent(h, 'task-exception', (m) => m.taskId === taskId);
    const m = await resolved;
    expect(m.status.runs[0]).toMatchObject({ state: 'exception', reasonResolved: 'deadline-exceeded' });
    const err = await expectStatus(q.reclaimTask(taskId, 0), 409);
    expect(err.code).toBe('RequestConflict');
    await expectStatus(h.root.cancelTask(taskId), 409);
    await expectStatus(h.root.rerunTask(taskId), 409);
  });

  it('424 for an error artifact; downloadArtifact throws its reason and message', async () => {
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef());
    const claim = await claimOne(h);
    const q = h.client('Queue', claim.credentials);
    await q.createArtifact(taskId, 0, 'public/missing.txt', {
      storageType: 'error',
      expires: taskcluster.fromNowJSON('1 day'),
      reason: 'file-missing-on-worker',
      message: 'no such file: missing.txt',
    });
    const err = await expectStatus(h.root.getArtifact(taskId, 0, 'public/missing.txt'), 424);
    expect(err.body).toEqual({ reason: 'file-missing-on-worker', message: 'no such file: missing.txt' });
    await expectStatus(h.root.getLatestArtifact(taskId, 'public/missing.txt'), 424);
    const content = await h.root.artifact(taskId, 0, 'public/missing.txt');
    expect(content).toEqual({
      storageType: 'error',
      reason: 'file-missing-on-worker',
      message: 'no such file: missing.txt',
    });
    const out = sink();
    await expect(
      taskcluster.downloadArtifact({
        taskId,
        name: 'public/missing.txt',
        queue: h.root,
        streamFactory: async () => out.stream,
      }),
    ).rejects.toMatchObject({ reason: 'file-missing-on-worker', message: 'no such file: missing.txt' });
    await expectStatus(h.root.getArtifact(taskId, 0, 'public/nothing-here'), 404);
  });

  it('403 for a missing scope', async () => {
    const limited = h.client('Queue', LIMITED);
    const err = await expectStatus(limited.createTask(taskcluster.slugid(), taskDef()), 403);
    expect(err.code).toBe('InsufficientScopes');
    expect(err.message).toContain('queue:create-task:project:none');
    // task credentials of one task cannot resolve another
    const a = taskcluster.slugid();
    const b = taskcluster.slugid();
    await h.root.createTask(a, taskDef());
    await h.root.createTask(b, taskDef());
    const ca = await claimOne(h);
    const cb = await claimOne(h);
    const qa = h.client('Queue', ca.credentials);
    await expectStatus(qa.reportCompleted(cb.status.taskId, 0), 403);
    // authorizedScopes narrows what credentials may do
    const narrowed = h.client('Queue', ca.credentials, {
      authorizedScopes: [`queue:reclaim-task:${ca.status.taskId}/0`],
    });
    await narrowed.reclaimTask(ca.status.taskId, 0);
    await expectStatus(narrowed.reportCompleted(ca.status.taskId, 0), 403);
    // the worker's own credentials cannot claim from another queue
    await expectStatus(
      h.worker.claimWork('other-prov/flow', { workerGroup: 'test-group', workerId: 'w1', tasks: 1 }),
      403,
    );
    // anonymous callers may read public artifacts but not create tasks
    await expectStatus(h.client('Queue', {}).createTask(taskcluster.slugid(), taskDef()), 403);
  });

  it('401 for a bad signature, an unknown client, an expired certificate or a forged certificate', async () => {
    const bad = h.client('Queue', { clientId: WORKER.clientId, accessToken: 'not-the-token' });
    const e1 = await expectStatus(
      bad.claimWork('local-test/flow', { workerGroup: 'test-group', workerId: 'w1', tasks: 1 }),
      401,
    );
    expect(e1.code).toBe('AuthenticationFailed');
    await expectStatus(
      h.client('Queue', { clientId: 'nobody', accessToken: 'x' }).task(taskcluster.slugid()),
      401,
    );
    const expired = taskcluster.createTemporaryCredentials({
      start: new Date(Date.now() - 60 * 60_000),
      expiry: new Date(Date.now() - 30 * 60_000),
      scopes: ['queue:claim-work:local-test/*', 'queue:worker-id:*'],
      credentials: WORKER,
    });
    const e2 = await expectStatus(
      h
        .client('Queue', expired)
        .claimWork('local-test/flow', { workerGroup: 'test-group', workerId: 'w1', tasks: 1 }),
      401,
    );
    expect(e2.message).toContain('expiry');
    // a certificate claiming more scopes than its issuer has
    const greedy = taskcluster.createTemporaryCredentials({
      start: new Date(),
      expiry: new Date(Date.now() + 60_000),
      scopes: ['*'],
      credentials: WORKER,
    });
    await expectStatus(h.client('Queue', greedy).createTask(taskcluster.slugid(), taskDef()), 401);
    // a valid certificate works
    const ok = taskcluster.createTemporaryCredentials({
      start: new Date(),
      expiry: new Date(Date.now() + 60_000),
      scopes: ['queue:claim-work:local-test/flow', 'queue:worker-id:test-group/w1'],
      credentials: WORKER,
    });
    const res = await h
      .client('Queue', ok)
      .claimWork('local-test/flow', { workerGroup: 'test-group', workerId: 'w1', tasks: 1 });
    expect(res.tasks).toEqual([]);
  });

  it('400 for an invalid task definition, naming the JSON pointer', async () => {
    const e1 = await expectStatus(
      h.root.createTask(taskcluster.slugid(), taskDef({ metadata: { name: 'x' } })),
      400,
    );
    expect(e1.message).toContain('/metadata/description');
    const e2 = await expectStatus(
      h.root.createTask(taskcluster.slugid(), taskDef({ retries: 77, bogus: 1 })),
      400,
    );
    expect(e2.message).toContain('/retries');
    expect(e2.message).toContain('/bogus');
    const e3 = await expectStatus(
      h.root.createTask(taskcluster.slugid(), taskDef({ deadline: taskcluster.fromNowJSON('-1 hour') })),
      400,
    );
    expect(e3.message).toContain('/deadline');
    const e4 = await expectStatus(
      h.root.createTask(
        taskcluster.slugid(),
        taskDef({ taskQueueId: 'a/b', provisionerId: 'x', workerType: 'b' }),
      ),
      400,
    );
    expect(e4.message).toContain('/taskQueueId');
    const e5 = await expectStatus(
      h.root.createTask(taskcluster.slugid(), taskDef({ dependencies: [taskcluster.slugid()] })),
      400,
    );
    expect(e5.message).toContain('/dependencies/0');
    await expectStatus(h.root.createTask(taskcluster.slugid(), taskDef({ scopes: ['queue:**'] })), 400);
    await expectStatus(
      h.root.claimWork('local-test/flow', { workerGroup: 'g', workerId: 'w', tasks: 33 }),
      400,
    );
  });

  it('createTask is idempotent for an identical definition and 409 for a different one', async () => {
    const taskId = taskcluster.slugid();
    const def = taskDef();
    const first = await h.root.createTask(taskId, def);
    const second = await h.root.createTask(taskId, def);
    expect(second).toEqual(first);
    await expectStatus(h.root.createTask(taskId, { ...def, priority: 'high' }), 409);
    // every task of a group shares one schedulerId
    await expectStatus(
      h.root.createTask(taskcluster.slugid(), taskDef({ taskGroupId: taskId, schedulerId: 'other' })),
      409,
    );
  });

  it('retries a failed request after an injected 5xx (API calls and object PUTs)', async () => {
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef());
    const claim = await claimOne(h);
    const q = h.client('Queue', claim.credentials);
    h.queue.injectFaults([
      { route: 'reportCompleted', count: 1 },
      { route: 'objectPut', count: 1 },
    ]);
    const data = Buffer.alloc(20_000, 7);
    const art = await q.createArtifact(taskId, 0, 'public/data.bin', {
      storageType: 'object',
      expires: taskcluster.fromNowJSON('1 day'),
      contentType: 'application/octet-stream',
      contentLength: data.length,
    });
    await taskcluster.upload({
      projectId: art.projectId,
      name: art.name,
      uploadId: art.uploadId,
      expires: new Date(art.expires),
      contentType: 'application/octet-stream',
      contentLength: data.length,
      streamFactory: async () => Readable.from([data]),
      object: h.client('Object', art.credentials),
      delayFactor: 10,
    });
    await q.finishArtifact(taskId, 0, 'public/data.bin', { uploadId: art.uploadId });
    const done = await q.reportCompleted(taskId, 0);
    expect(done.status.state).toBe('completed');
    h.queue.injectFaults({ route: 'queue.task', count: 5, status: 503 });
    await expectStatus(h.root.task(taskId), 503);
    h.queue.clearFaults();
    expect((await h.root.task(taskId)).taskQueueId).toBe('local-test/flow');
  });
});
