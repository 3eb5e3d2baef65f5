// The whole worker flow over real HTTP with the unmodified taskcluster-client@87.1.3; imports only the public entry.
import { createHmac, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  claimOne,
  expectStatus,
  type Harness,
  sink,
  startHarness,
  taskcluster,
  taskDef,
  WORKER,
} from './helpers.js';

describe('local queue: create → claim → reclaim → upload → finish → complete → download', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.close();
  });

  it('runs the whole worker flow with taskcluster-client', async () => {
    const seen: string[] = [];
    for (const e of ['task-defined', 'task-pending', 'task-claimed', 'task-resolved']) {
      h.queue.events.on(e, (m: { taskId: string }) => seen.push(`${e}:${m.taskId}`));
    }
    const taskId = taskcluster.slugid();
    const created = await h.root.createTask(taskId, taskDef({ scopes: ['secrets:get:foo'] }));
    expect(created.status.state).toBe('pending');
    expect(created.status.runs).toEqual([
      { runId: 0, state: 'pending', reasonCreated: 'scheduled', scheduled: expect.any(String) },
    ]);
    const def = await h.root.task(taskId);
    expect(def).toMatchObject({
      taskQueueId: 'local-test/flow',
      provisionerId: 'local-test',
      workerType: 'flow',
      schedulerId: '-',
      projectId: 'none',
      taskGroupId: taskId,
      priority: 'lowest',
      retries: 5,
      dependencies: [],
      requires: 'all-completed',
      routes: [],
      tags: {},
      extra: {},
    });

    const claim = await claimOne(h);
    expect(claim.status.taskId).toBe(taskId);
    expect(claim.runId).toBe(0);
    expect(claim.task).toEqual(def);
    expect(claim.status.runs[0]).toMatchObject({
      state: 'running',
      workerGroup: 'test-group',
      workerId: 'w1',
    });
    const until = Math.floor(new Date(claim.takenUntil).getTime() / 1000);
    expect(claim.credentials.clientId).toBe(`task-client/${taskId}/0/on/test-group/w1/until/${until}`);
    const cert = JSON.parse(claim.credentials.certificate);
    expect(cert.scopes).toEqual([
      `queue:reclaim-task:${taskId}/0`,
      `queue:resolve-task:${taskId}/0`,
      `queue:create-artifact:${taskId}/0`,
      'secrets:get:foo',
    ]);
    expect(cert.expiry).toBe(new Date(claim.takenUntil).getTime());

    const first = h.client('Queue', claim.credentials);
    const reclaimed = await first.reclaimTask(taskId, 0);
    expect(reclaimed.credentials.accessToken).not.toBe(claim.credentials.accessToken);
    expect(new Date(reclaimed.takenUntil).getTime()).toBeGreaterThanOrEqual(
      new Date(claim.takenUntil).getTime(),
    );
    const taskQueue = h.client('Queue', reclaimed.credentials);

    // a large object artifact (putUrl) and a small one (dataInline)
    const big = randomBytes(100_000);
    const small = Buffer.from('hello from the local queue\n');
    const expires = taskcluster.fromNowJSON('1 day');
    for (const [name, data, contentType] of [
      ['public/big.bin', big, 'application/octet-stream'],
      ['public/logs/live.log', small, 'text/plain'],
    ] as const) {
      const art = await taskQueue.createArtifact(taskId, 0, name, {
        storageType: 'object',
        expires,
        contentType,
        contentLength: data.length,
      });
      expect(art).toMatchObject({ storageType: 'object', name: `t/${taskId}/0/${name}`, projectId: 'none' });
      await taskcluster.upload({
        projectId: art.projectId,
        name: art.name,
        uploadId: art.uploadId,
        expires: new Date(art.expires),
        contentType,
        contentLength: data.length,
        streamFactory: async () => Readable.from([data]),
        object: h.client('Object', art.credentials),
      });
      await taskQueue.finishArtifact(taskId, 0, name, { uploadId: art.uploadId });
    }
    const completed = await taskQueue.reportCompleted(taskId, 0);
    expect(completed.status.state).toBe('completed');
    expect(completed.status.runs[0]).toMatchObject({
      reasonResolved: 'completed',
      resolved: expect.any(String),
    });

    for (const [name, data] of [
      ['public/big.bin', big],
      ['public/logs/live.log', small],
    ] as const) {
      const out = sink();
      const contentType = await taskcluster.downloadArtifact({
        taskId,
        runId: 0,
        name,
        queue: h.root,
        streamFactory: async () => out.stream,
      });
      expect(out.bytes().equals(data)).toBe(true);
      expect(contentType).toBe(name.endsWith('.bin') ? 'application/octet-stream' : 'text/plain');
    }
    // latest run, anonymous (public/ artifacts are readable without credentials)
    const anon = sink();
    await taskcluster.downloadArtifact({
      taskId,
      name: 'public/big.bin',
      queue: h.client('Queue', {}),
      streamFactory: async () => anon.stream,
    });
    expect(anon.bytes().equals(big)).toBe(true);

    const list = await h.root.listArtifacts(taskId, 0);
    expect(list.artifacts.map((a: { name: string }) => a.name)).toEqual([
      'public/big.bin',
      'public/logs/live.log',
    ]);
    expect(list.artifacts[1]).toEqual({
      storageType: 'object',
      name: 'public/logs/live.log',
      expires: expires,
      contentType: 'text/plain',
    });
    const latest = await h.root.listLatestArtifacts(taskId);
    expect(latest.artifacts).toHaveLength(2);
    const redirect = await h.root.getArtifact(taskId, 0, 'public/big.bin');
    expect(redirect.storageType).toBe('object');
    const fetched = await fetch(redirect.url);
    expect(Buffer.from(await fetched.arrayBuffer()).equals(big)).toBe(true);

    expect(seen).toEqual([
      `task-defined:${taskId}`,
      `task-pending:${taskId}`,
      `task-claimed:${taskId}`,
      `task-resolved:${taskId}`,
    ]);
  });

  it('streams a large object (20 MiB, chunked PUT) to disk and back', async () => {
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef());
    const claim = await claimOne(h);
    const q = h.client('Queue', claim.credentials);
    const data = randomBytes(20 * 1024 * 1024);
    const art = await q.createArtifact(taskId, 0, 'public/large.bin', {
      storageType: 'object',
      expires: taskcluster.fromNowJSON('1 day'),
      contentType: 'application/octet-stream',
      contentLength: data.length,
    });
    const chunks = Array.from({ length: 20 }, (_, i) =>
      data.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024),
    );
    await taskcluster.upload({
      projectId: art.projectId,
      name: art.name,
      uploadId: art.uploadId,
      expires: new Date(art.expires),
      contentType: 'application/octet-stream',
      contentLength: data.length,
      streamFactory: async () => Readable.from(chunks),
      object: h.client('Object', art.credentials),
    });
    await q.finishArtifact(taskId, 0, 'public/large.bin', { uploadId: art.uploadId });
    const out = sink();
    await taskcluster.downloadArtifact({
      taskId,
      runId: 0,
      name: 'public/large.bin',
      queue: h.root,
      streamFactory: async () => out.stream,
    });
    expect(out.bytes().equals(data)).toBe(true);
  });

  it('serves private artifacts through signed URLs (bewit) and refuses them anonymously', async () => {
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef());
    const claim = await claimOne(h);
    await h.client('Queue', claim.credentials).createArtifact(taskId, 0, 'private/secret.txt', {
      storageType: 'reference',
      expires: taskcluster.fromNowJSON('1 day'),
      url: 'https://example.com/secret',
      contentType: 'text/plain',
    });
    await expectStatus(h.client('Queue', {}).getArtifact(taskId, 0, 'private/secret.txt'), 403);
    const signed: string = (h.root as any).buildSignedUrl(
      h.root.getArtifact,
      taskId,
      0,
      'private/secret.txt',
      {
        expiration: 60,
      },
    );
    const res = await fetch(signed, { redirect: 'manual' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('https://example.com/secret');
    const tampered = await fetch(signed.replace('private%2Fsecret.txt', 'private%2Fother.txt'), {
      redirect: 'manual',
    });
    expect(tampered.status).toBe(401);
  });

  it('wakes a waiting claimWork as soon as a task becomes pending', async () => {
    await h.queue.close();
    h = await startHarness({ claimWorkTimeout: 25 });
    const taskId = taskcluster.slugid();
    const waiting = h.worker.claimWork('local-test/wake', {
      workerGroup: 'test-group',
      workerId: 'w1',
      tasks: 4,
    });
    let settled = false;
    void waiting.then(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(settled).toBe(false);
    await h.root.createTask(taskId, taskDef({ taskQueueId: 'local-test/wake' }));
    const res = await waiting;
    expect(res.tasks.map((t: { status: { taskId: string } }) => t.status.taskId)).toEqual([taskId]);
  });

  it('a claimWork whose client disconnected claims nothing', async () => {
    await h.queue.close();
    h = await startHarness({ claimWorkTimeout: 25 });
    // a raw Hawk-signed request (taskcluster-client cannot abort a call) that we cut off while it waits
    const url = new URL(
      `${h.queue.rootUrl}/api/queue/v1/claim-work/${encodeURIComponent('local-test/abort')}`,
    );
    const ts = Math.floor(Date.now() / 1000);
    const nonce = 'abc123';
    const normalized = `hawk.1.header\n${ts}\n${nonce}\nPOST\n${url.pathname}\n${url.hostname}\n${url.port}\n\n\n`;
    const mac = createHmac('sha256', WORKER.accessToken).update(normalized).digest('base64');
    const body = JSON.stringify({ workerGroup: 'test-group', workerId: 'gone', tasks: 1 });
    const req = request(url, {
      method: 'POST',
      headers: {
        authorization: `Hawk id="${WORKER.clientId}", ts="${ts}", nonce="${nonce}", mac="${mac}"`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
    });
    req.on('error', () => {});
    req.end(body);
    await new Promise((r) => setTimeout(r, 300));
    req.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef({ taskQueueId: 'local-test/abort' }));
    const claim = await claimOne(h, 'local-test/abort', 'present');
    expect(claim.status.taskId).toBe(taskId);
    expect(claim.workerId).toBe('present');
  });

  it('hands every task to exactly one of many concurrent claimWork callers', async () => {
    const ids = await h.queue.createTasks(60, { taskQueueId: 'local-test/race' });
    const claimed: string[] = [];
    const workers = Array.from({ length: 8 }, async (_, i) => {
      for (;;) {
        const res = await h.worker.claimWork('local-test/race', {
          workerGroup: 'test-group',
          workerId: `w${i}`,
          tasks: 3,
        });
        if (res.tasks.length === 0) return;
        for (const t of res.tasks) claimed.push(t.status.taskId);
      }
    });
    await Promise.all(workers);
    expect(claimed).toHaveLength(60);
    expect(new Set(claimed)).toEqual(new Set(ids));
  });

  it('claims by priority, then first in first out', async () => {
    const ids: Record<string, string> = {};
    for (const [label, priority] of [
      ['low-1', 'low'],
      ['high-1', 'high'],
      ['low-2', 'low'],
      ['highest', 'highest'],
      ['high-2', 'high'],
    ] as const) {
      ids[label] = taskcluster.slugid();
      await h.root.createTask(ids[label], taskDef({ taskQueueId: 'local-test/prio', priority }));
    }
    const res = await h.worker.claimWork('local-test/prio', {
      workerGroup: 'test-group',
      workerId: 'w1',
      tasks: 32,
    });
    expect(res.tasks.map((t: { status: { taskId: string } }) => t.status.taskId)).toEqual([
      ids.highest,
      ids['high-1'],
      ids['high-2'],
      ids['low-1'],
      ids['low-2'],
    ]);
    const none = await h.worker.claimWork('local-test/prio', {
      workerGroup: 'test-group',
      workerId: 'w1',
      tasks: 1,
    });
    expect(none.tasks).toEqual([]);
    expect(await h.root.taskQueueCounts('local-test/prio')).toEqual({
      taskQueueId: 'local-test/prio',
      pendingTasks: 0,
      claimedTasks: 5,
    });
    await h.root.createTask(taskcluster.slugid(), taskDef({ taskQueueId: 'local-test/prio' }));
    expect((await h.root.pendingTasks('local-test/prio')).pendingTasks).toBe(1);
  });

  it('createTasks bulk-inserts pending tasks that are claimed first in, first out', async () => {
    const ids = await h.queue.createTasks(3, { taskQueueId: 'local-test/bulk', priority: 'high' });
    expect(ids).toHaveLength(3);
    expect((await h.root.status(ids[0])).status.runs).toEqual([
      expect.objectContaining({ state: 'pending', reasonCreated: 'scheduled' }),
    ]);
    const res = await h.worker.claimWork('local-test/bulk', {
      workerGroup: 'test-group',
      workerId: 'w1',
      tasks: 3,
    });
    expect(res.tasks.map((t: { status: { taskId: string } }) => t.status.taskId)).toEqual(ids);
    expect(res.tasks[0].task.priority).toBe('high');
  });

  it('serves reference, link, error and s3 artifacts', async () => {
    const taskId = taskcluster.slugid();
    await h.root.createTask(taskId, taskDef());
    const claim = await claimOne(h);
    const q = h.client('Queue', claim.credentials);
    const expires = taskcluster.fromNowJSON('1 day');
    await q.createArtifact(taskId, 0, 'public/ref', {
      storageType: 'reference',
      expires,
      url: 'https://example.com/x',
      contentType: 'text/plain',
    });
    await q.createArtifact(taskId, 0, 'public/logs/live.log', {
      storageType: 'reference',
      expires,
      url: 'https://example.com/live',
      contentType: 'text/plain',
    });
    // generic-worker replaces the live log reference with a link
    await q.createArtifact(taskId, 0, 'public/logs/live.log', {
      storageType: 'link',
      expires,
      artifact: 'public/ref',
    });
    const s3 = await q.createArtifact(taskId, 0, 'public/s3.txt', {
      storageType: 's3',
      expires,
      contentType: 'text/plain',
    });
    const put = await fetch(s3.putUrl, {
      method: 'PUT',
      headers: { 'content-type': 'text/plain' },
      body: 'legacy s3 bytes',
    });
    expect(put.status).toBe(200);
    const ref = await h.root.getArtifact(taskId, 0, 'public/logs/live.log');
    expect(ref).toEqual({ storageType: 'reference', url: 'https://example.com/x' });
    const content = await h.root.artifact(taskId, 0, 'public/ref');
    expect(content).toEqual({ storageType: 'reference', url: 'https://example.com/x' });
    const out = sink();
    await taskcluster.downloadArtifact({
      taskId,
      runId: 0,
      name: 'public/s3.txt',
      queue: h.root,
      streamFactory: async () => out.stream,
    });
    expect(out.bytes().toString()).toBe('legacy s3 bytes');
    const info = await h.root.latestArtifactInfo(taskId, 'public/s3.txt');
    expect(info).toMatchObject({ storageType: 's3', name: 'public/s3.txt', contentType: 'text/plain' });
  });
});
