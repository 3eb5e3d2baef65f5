// Claim expiry, deadlines, retries, dependencies, rerun/schedule, secrets, worker-manager and auth, over real HTTP
// with taskcluster-client@87.1.3 (public entry only). Short timeouts come from the queue's own config.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import {
  claimOne,
  expectStatus,
  type Harness,
  nextEvent,
  startHarness,
  taskcluster,
  taskDef,
} from './helpers.js';

const STATIC_SECRET = 'static-secret-0123456789abcdefghijklmnopqrstu';

describe('local queue: state machine', () => {
  let h: Harness;
  afterEach(async () => {
    await h.close();
  });

  it('claim expiry resolves the run claim-expired and adds a retry run', async () => {
    h = await startHarness({ claimTimeout: 1 });
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef({ retries: 1 }));
    const claim = await claimOne(h);
    const expired = nextEvent(h, 'task-exception', (m) => m.taskId === taskId);
    const m = await expired;
    expect(m.runId).toBe(0);
    const { status } = await h.root.status(taskId);
    expect(status.retriesLeft).toBe(0);
    expect(status.state).toBe('pending');
    expect(status.runs[0]).toMatchObject({ state: 'exception', reasonResolved: 'claim-expired' });
    expect(status.runs[1]).toMatchObject({ runId: 1, state: 'pending', reasonCreated: 'retry' });
    await expectStatus(h.client('Queue', claim.credentials).reclaimTask(taskId, 0), 409);
    const again = await claimOne(h);
    expect(again.runId).toBe(1);
    // retries exhausted: the next expiry resolves the task for good
    const final = nextEvent(h, 'task-resolved', (x) => x.taskId === taskId && x.runId === 1);
    const f = await final;
    expect(f.status.state).toBe('exception');
    expect(f.status.runs).toHaveLength(2);
    expect(f.status.runs[1].reasonResolved).toBe('claim-expired');
  });

  it('a pending task and an unscheduled task both end deadline-exceeded', async () => {
    h = await startHarness();
    const pending = taskcluster.slugid();
    const blocked = taskcluster.slugid();
    await h.root.createTask(
      pending,
      taskDef({ taskQueueId: 'local-test/nobody', deadline: taskcluster.fromNowJSON('2 seconds') }),
    );
    await h.root.createTask(
      blocked,
      taskDef({
        taskQueueId: 'local-test/nobody',
        dependencies: [blocked],
        deadline: taskcluster.fromNowJSON('2 seconds'),
      }),
    );
    const a = nextEvent(h, 'task-exception', (m) => m.taskId === pending);
    const b = nextEvent(h, 'task-exception', (m) => m.taskId === blocked);
    const [ma, mb] = await Promise.all([a, b]);
    expect(ma.status.runs).toEqual([
      expect.objectContaining({
        state: 'exception',
        reasonCreated: 'scheduled',
        reasonResolved: 'deadline-exceeded',
      }),
    ]);
    expect(mb.status.runs).toEqual([
      expect.objectContaining({
        state: 'exception',
        reasonCreated: 'exception',
        reasonResolved: 'deadline-exceeded',
      }),
    ]);
    const none = await h.worker.claimWork('local-test/nobody', {
      workerGroup: 'test-group',
      workerId: 'w1',
      tasks: 1,
    });
    expect(none.tasks).toEqual([]);
  });

  it('reportException retries worker-shutdown and intermittent-task while retries are left', async () => {
    h = await startHarness();
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef({ retries: 2 }));
    let c = await claimOne(h);
    await h.client('Queue', c.credentials).reportException(taskId, 0, { reason: 'worker-shutdown' });
    c = await claimOne(h);
    await h.client('Queue', c.credentials).reportException(taskId, 1, { reason: 'intermittent-task' });
    c = await claimOne(h);
    const q = h.client('Queue', c.credentials);
    await expectStatus(q.reportException(taskId, 2, { reason: 'no-such-reason' }), 400);
    const res = await q.reportException(taskId, 2, { reason: 'malformed-payload' });
    expect(res.status.runs.map((r: any) => [r.reasonCreated, r.state, r.reasonResolved])).toEqual([
      ['scheduled', 'exception', 'worker-shutdown'],
      ['retry', 'exception', 'intermittent-task'],
      ['task-retry', 'exception', 'malformed-payload'],
    ]);
    expect(res.status.retriesLeft).toBe(0);
    // repeating the same resolution is idempotent
    const repeat = await q.reportException(taskId, 2, { reason: 'malformed-payload' });
    expect(repeat.status.runs).toHaveLength(3);
    // rerun resets retries and adds a pending run
    const rerun = await h.root.rerunTask(taskId);
    expect(rerun.status.runs[3]).toMatchObject({ runId: 3, state: 'pending', reasonCreated: 'rerun' });
    expect(rerun.status.retriesLeft).toBe(2);
  });

  it('dependencies: all-completed waits for completion, all-resolved for any resolution; scheduleTask forces', async () => {
    h = await startHarness();
    const a = taskcluster.slugid();
    const b = taskcluster.slugid();
    const allCompleted = taskcluster.slugid();
    const allResolved = taskcluster.slugid();
    const selfDep = taskcluster.slugid();
    await h.root.createTask(a, taskDef({ taskQueueId: 'local-test/deps' }));
    await h.root.createTask(b, taskDef({ taskQueueId: 'local-test/deps' }));
    await h.root.createTask(allCompleted, taskDef({ dependencies: [a, b] }));
    await h.root.createTask(allResolved, taskDef({ dependencies: [a, b], requires: 'all-resolved' }));
    await h.root.createTask(selfDep, taskDef({ dependencies: [selfDep] }));
    for (const t of [allCompleted, allResolved, selfDep]) {
      expect((await h.root.status(t)).status.state).toBe('unscheduled');
    }
    const ca = await claimOne(h, 'local-test/deps');
    await h.client('Queue', ca.credentials).reportCompleted(ca.status.taskId, 0);
    expect((await h.root.status(allCompleted)).status.state).toBe('unscheduled');
    const cb = await claimOne(h, 'local-test/deps');
    await h.client('Queue', cb.credentials).reportFailed(cb.status.taskId, 0);
    expect((await h.root.status(allCompleted)).status.state).toBe('unscheduled');
    const resolved = await h.root.status(allResolved);
    expect(resolved.status.runs).toEqual([
      expect.objectContaining({ state: 'pending', reasonCreated: 'scheduled' }),
    ]);
    // a dependency that already completed counts at creation time
    const late = taskcluster.slugid();
    const completedDep = ca.status.taskId;
    await h.root.createTask(late, taskDef({ dependencies: [completedDep] }));
    expect((await h.root.status(late)).status.state).toBe('pending');
    const scheduled = await h.root.scheduleTask(selfDep);
    expect(scheduled.status.state).toBe('pending');
    const twice = await h.root.scheduleTask(selfDep);
    expect(twice.status.runs).toHaveLength(1);
    const dependents = await h.root.listDependentTasks(a);
    expect(dependents.tasks.map((t: any) => t.status.taskId).sort()).toEqual(
      [allCompleted, allResolved, late].sort(),
    );
    expect(dependents.tasks[0].task.dependencies).toContain(a);
    const group = await h.root.listTaskGroup(a, { limit: 1 });
    expect(group.tasks).toHaveLength(1);
    expect(group.tasks[0].status.taskId).toBe(a);
    expect(group.continuationToken).toBeUndefined();
    expect(group).toMatchObject({ taskGroupId: a, schedulerId: '-', expires: expect.any(String) });
    expect(group.sealed).toBeUndefined();
  });

  it('secrets, worker-manager static registration and auth', async () => {
    h = await startHarness({
      secrets: { 'worker-pool:local-test/wm': { token: 'abc' } },
      workers: [
        { workerPoolId: 'local-test/wm', workerGroup: 'g1', workerId: 'w1', staticSecret: STATIC_SECRET },
      ],
    });
    const secrets = h.client('Secrets');
    expect((await secrets.get('worker-pool:local-test/wm')).secret).toEqual({ token: 'abc' });
    await expectStatus(secrets.get('nope'), 404);
    await expectStatus(h.client('Secrets', {}).get('worker-pool:local-test/wm'), 403);

    const wm = h.client('WorkerManager', {});
    const register = {
      workerPoolId: 'local-test/wm',
      providerId: 'static',
      workerGroup: 'g1',
      workerId: 'w1',
      workerIdentityProof: { staticSecret: STATIC_SECRET },
    };
    await expectStatus(
      wm.registerWorker({ ...register, workerIdentityProof: { staticSecret: 'x'.repeat(44) } }),
      400,
    );
    await expectStatus(wm.registerWorker({ ...register, workerId: 'w2' }), 404);
    const reg = await wm.registerWorker(register);
    expect(reg.credentials.clientId).toBe('worker/static/local-test/wm/g1/w1');
    expect(reg.secret).toHaveLength(44);
    // the registered credentials can claim work and read the pool's secret
    const workerQueue = h.client('Queue', reg.credentials);
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef({ taskQueueId: 'local-test/wm' }));
    const claimed = await workerQueue.claimWork('local-test/wm', {
      workerGroup: 'g1',
      workerId: 'w1',
      tasks: 1,
    });
    expect(claimed.tasks).toHaveLength(1);
    expect((await h.client('Secrets', reg.credentials).get('worker-pool:local-test/wm')).secret).toEqual({
      token: 'abc',
    });
    const wmAuthed = h.client('WorkerManager', reg.credentials);
    const rereg = await wmAuthed.reregisterWorker({
      workerPoolId: 'local-test/wm',
      workerGroup: 'g1',
      workerId: 'w1',
      secret: reg.secret,
    });
    expect(rereg.secret).not.toBe(reg.secret);
    await expectStatus(
      wmAuthed.reregisterWorker({
        workerPoolId: 'local-test/wm',
        workerGroup: 'g1',
        workerId: 'w1',
        secret: reg.secret,
      }),
      400,
    );
    // removing the worker resolves its claimed run worker-shutdown (and retries it)
    await wmAuthed.removeWorker('local-test/wm', 'g1', 'w1');
    const { status } = await h.root.status(taskId);
    expect(status.runs[0]).toMatchObject({ state: 'exception', reasonResolved: 'worker-shutdown' });
    expect(status.runs[1]).toMatchObject({ state: 'pending', reasonCreated: 'retry' });
    await expectStatus(wm.registerWorker(register), 400);

    const auth = h.client('Auth');
    expect((await auth.ping()).alive).toBe(true);
    expect((await auth.currentScopes()).scopes).toContain('*');
  });
});

describe('local queue: expiry', () => {
  let h: Harness;
  afterEach(async () => {
    await h.close();
  });

  it('deletes tasks, artifacts and object bytes past their expires', async () => {
    const BIG = Buffer.alloc(20_000, 'x');
    h = await startHarness({ expirySweepInterval: 1 });
    const taskId = taskcluster.slugid();
    const expires = taskcluster.fromNowJSON('4 seconds');
    const keep = taskcluster.slugid();
    await h.root.createTask(
      taskId,
      taskDef({
        deadline: taskcluster.fromNowJSON('3 seconds'),
        expires,
      }),
    );
    await h.root.createTask(keep, taskDef({ taskQueueId: 'local-test/keep' }));
    const claim = await claimOne(h);
    const q = h.client('Queue', claim.credentials);
    const art = await q.createArtifact(taskId, 0, 'public/a.txt', {
      storageType: 'object',
      expires,
      contentType: 'text/plain',
      contentLength: BIG.length,
    });
    // over 8 KiB: PUT to a file (inline uploads live in the database and go with its row)
    await taskcluster.upload({
      projectId: art.projectId,
      name: art.name,
      uploadId: art.uploadId,
      expires: new Date(art.expires),
      contentType: 'text/plain',
      contentLength: BIG.length,
      streamFactory: async () => Readable.from([BIG]),
      object: h.client('Object', art.credentials),
    });
    await q.finishArtifact(taskId, 0, 'public/a.txt', { uploadId: art.uploadId });
    const objects = join(h.stateDir, 'objects');
    expect(readdirSync(objects)).toHaveLength(1);
    // wait (bounded) for the sweep after `expires`
    for (let i = 0; i < 100 && readdirSync(objects).length > 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(readdirSync(objects)).toEqual([]);
    await expectStatus(h.root.status(taskId), 404);
    expect((await h.root.status(keep)).status.state).toBe('pending');
    // the taskId is free again: a new definition under it is the one served (no stale cached definition)
    await h.root.createTask(taskId, taskDef({ taskQueueId: 'local-test/again', payload: { second: true } }));
    expect(await h.root.task(taskId)).toMatchObject({
      taskQueueId: 'local-test/again',
      payload: { second: true },
    });
  });
});

describe('local queue: roles', () => {
  let h: Harness;
  afterEach(async () => {
    await h.close();
  });

  it('grants role scopes through assume:, for clients and their temporary credentials', async () => {
    const roled = {
      clientId: 'project/tcw/submitter',
      accessToken: 'submitter-token-0123456789abcdefghijklmnop',
      scopes: ['assume:project:tcw'],
    };
    h = await startHarness({
      roles: { 'project:tcw': ['queue:create-task:*', 'queue:scheduler-id:*'] },
      clients: [roled],
    });
    const q = h.client('Queue', roled);
    const res = await q.createTask(taskcluster.slugid(), taskDef());
    expect(res.status.state).toBe('pending');
    const temp = taskcluster.createTemporaryCredentials({
      start: new Date(),
      expiry: new Date(Date.now() + 60_000),
      scopes: ['assume:project:tcw'],
      credentials: roled,
    });
    expect((await h.client('Queue', temp).createTask(taskcluster.slugid(), taskDef())).status.state).toBe(
      'pending',
    );
    await expectStatus(q.cancelTask(res.status.taskId), 403);
  });
});

describe('local queue: task groups', () => {
  let h: Harness;
  afterEach(async () => {
    await h.close();
  });

  it('seals a group (409 for new tasks) and cancels its unresolved tasks only once sealed', async () => {
    h = await startHarness();
    const groupId = taskcluster.slugid();
    const ids = [taskcluster.slugid(), taskcluster.slugid(), taskcluster.slugid()];
    for (const id of ids)
      await h.root.createTask(id, taskDef({ taskGroupId: groupId, taskQueueId: 'local-test/group' }));
    const claim = await claimOne(h, 'local-test/group');
    await h.client('Queue', claim.credentials).reportCompleted(claim.status.taskId, 0);
    await expectStatus(h.root.cancelTaskGroup(groupId), 409);
    const sealed = await h.root.sealTaskGroup(groupId);
    expect(sealed).toMatchObject({ taskGroupId: groupId, schedulerId: '-', sealed: expect.any(String) });
    expect(await h.root.sealTaskGroup(groupId)).toEqual(sealed);
    expect(await h.root.getTaskGroup(groupId)).toEqual(sealed);
    await expectStatus(h.root.createTask(taskcluster.slugid(), taskDef({ taskGroupId: groupId })), 409);
    const res = await h.root.cancelTaskGroup(groupId);
    expect(res.taskGroupSize).toBe(3);
    expect(res.cancelledCount).toBe(2);
    expect(res.taskIds.sort()).toEqual(ids.filter((id) => id !== claim.status.taskId).sort());
    expect((await h.root.status(res.taskIds[0])).status.runs[0].reasonResolved).toBe('canceled');
    expect((await h.root.cancelTaskGroup(groupId)).cancelledCount).toBe(0);
    await expectStatus(h.root.getTaskGroup(taskcluster.slugid()), 404);
  });
});
