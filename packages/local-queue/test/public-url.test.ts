// Where clients reach the queue: a queue on all interfaces names the loopback address (with a warning), and
// publicUrl replaces the listening address in rootUrl and in the data URLs of uploads. Real HTTP throughout.

import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startLocalQueue } from '../src/index.js';
import { taskcluster, taskDef, WORKER } from './helpers.js';

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

describe('local queue: rootUrl and data URLs', () => {
  const dirs: string[] = [];
  const dir = () => {
    const d = mkdtempSync(join(tmpdir(), 'local-queue-url-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('on all interfaces without publicUrl: the loopback address, and a warning saying what to set', async () => {
    const warnings: string[] = [];
    const logger = { info() {}, debug() {}, error() {}, warn: (m: string) => warnings.push(m) };
    const q = await startLocalQueue({ stateDir: dir(), host: '0.0.0.0', port: 0, logger });
    try {
      expect(q.rootUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(warnings.join('\n')).toMatch(/listening on all interfaces.*publicUrl/);
      const root = new taskcluster.Queue({ rootUrl: q.rootUrl, credentials: q.rootCredentials });
      const taskId = taskcluster.slugid();
      await root.createTask(taskId, taskDef());
      expect((await root.status(taskId)).status.state).toBe('pending');
    } finally {
      await q.close();
    }
  });

  it('publicUrl is the rootUrl and the base of data URLs, and clients work through it', async () => {
    const port = await freePort();
    const q = await startLocalQueue({
      stateDir: dir(),
      port,
      publicUrl: `http://localhost:${port}/`,
      config: { clients: [WORKER] },
    });
    try {
      expect(q.rootUrl).toBe(`http://localhost:${port}`);
      const root = new taskcluster.Queue({ rootUrl: q.rootUrl, credentials: q.rootCredentials });
      const worker = new taskcluster.Queue({ rootUrl: q.rootUrl, credentials: WORKER });
      const taskId = taskcluster.slugid();
      await root.createTask(taskId, taskDef());
      const claim = (
        await worker.claimWork('local-test/flow', { workerGroup: 'test-group', workerId: 'w1', tasks: 1 })
      ).tasks[0];
      const task = new taskcluster.Queue({ rootUrl: q.rootUrl, credentials: claim.credentials });
      const created = await task.createArtifact(taskId, 0, 'public/a.txt', {
        storageType: 's3',
        expires: claim.task.expires,
        contentType: 'text/plain',
      });
      expect(created.putUrl.startsWith(`http://localhost:${port}/__objects/put/`)).toBe(true);
      const put = await fetch(created.putUrl, {
        method: 'PUT',
        body: 'hello',
        headers: { 'content-type': 'text/plain' },
      });
      expect(put.status).toBe(200);
      const got = await fetch(`${q.rootUrl}/api/queue/v1/task/${taskId}/runs/0/artifacts/public/a.txt`);
      expect(await got.text()).toBe('hello');
    } finally {
      await q.close();
    }
  });

  it('refuses a publicUrl that is not an http(s) URL before listening', async () => {
    const port = await freePort();
    for (const publicUrl of ['localhost:1234', 'ftp://example.com', 'http://example.com/?x=1']) {
      await expect(startLocalQueue({ stateDir: dir(), port, publicUrl })).rejects.toThrow(/publicUrl/);
    }
    // nothing was left listening on the port
    const q = await startLocalQueue({ stateDir: dir(), port });
    await q.close();
  });
});
