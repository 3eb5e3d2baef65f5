// Images: pulls from a real registry (Debian's docker-registry on 127.0.0.1), `docker save` tarballs loaded from
// another task's artifact (served by a local HTTP server in the queue's URL layout), errors, dedup, cache and LRU.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MalformedPayloadError, ResourceUnavailableError, silentLogger, TaskLog, TcwError } from '@tcw/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { engine, taskInfo } from './helpers.js';
import {
  type ArtifactServer,
  buildMarkerImage,
  docker,
  freePort,
  type LocalRegistry,
  REGISTRY_USER,
  runDirect,
  saveImage,
  startArtifactServer,
  startRegistry,
} from './images-helpers.js';

const rand = () => Math.random().toString(36).slice(2, 10);

function imageExists(ref: string): boolean {
  try {
    docker('image', 'inspect', ref);
    return true;
  } catch {
    return false;
  }
}

async function failure(promise: Promise<unknown>): Promise<Error & { log: string; code?: string }> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'expected the run to fail').toBeInstanceOf(Error);
  return error as Error & { log: string };
}

describe('docker engine: images from a registry', () => {
  let registry: LocalRegistry;
  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(async () => {
    await registry.stop();
  });

  it('pulls an image that is not present locally, then runs it', async () => {
    const local = `tcw-test/pull-src-${rand()}:v1`;
    const remote = `${registry.host}/tcw/pulled-${rand()}:v1`;
    const marker = `pulled-${rand()}`;
    await buildMarkerImage(local, marker);
    docker('tag', local, remote);
    docker('push', remote);
    docker('rmi', local, remote);
    expect(imageExists(remote)).toBe(false);
    const run = await runDirect(engine(), { image: remote, command: ['cat', '/marker.txt'] });
    expect(run.result.success).toBe(true);
    expect(run.log).toContain(`pulling image ${remote}`);
    expect(run.log).toContain(marker);
    expect(imageExists(remote)).toBe(true);
    await run.result.dispose();
    docker('rmi', remote);
  });

  it('a private registry: refused without credentials, pulled with the configured ones (masked in the log)', async () => {
    // push to an open registry, then serve the same storage with htpasswd auth
    const storage = await mkdtemp(join(tmpdir(), 'tcw-registry-storage-'));
    const open = await startRegistry({ storage });
    const local = `tcw-test/private-src-${rand()}:v1`;
    const marker = `private-${rand()}`;
    await buildMarkerImage(local, marker);
    const path = `tcw/private-${rand()}:v1`;
    docker('tag', local, `${open.host}/${path}`);
    docker('push', `${open.host}/${path}`);
    docker('rmi', local, `${open.host}/${path}`);
    await open.stop();
    const closed = await startRegistry({ storage, auth: true });
    const remote = `${closed.host}/${path}`;
    try {
      const refused = await failure(runDirect(engine(), { image: remote, command: ['cat', '/marker.txt'] }));
      expect(MalformedPayloadError.isMalformedPayload(refused)).toBe(true);
      expect(refused.log).toMatch(/no basic auth credentials|unauthorized|authentication required/i);
      const run = await runDirect(
        engine({
          registries: {
            [closed.host]: { username: REGISTRY_USER.username, password: REGISTRY_USER.password },
          },
        }),
        { image: remote, command: ['cat', '/marker.txt'] },
      );
      expect(run.result.success).toBe(true);
      expect(run.log).toContain(marker);
      expect(run.log).toContain(`(with the credentials for ${closed.host})`);
      expect(run.log).not.toContain(REGISTRY_USER.password);
      await run.result.dispose();
      docker('rmi', remote);
    } finally {
      await closed.stop();
      await rm(storage, { recursive: true, force: true });
    }
  });

  it('an image the registry does not have → malformed-payload with the registry’s message in the log', async () => {
    const error = await failure(runDirect(engine(), { image: `${registry.host}/tcw/absent-${rand()}:v1` }));
    expect(MalformedPayloadError.isMalformedPayload(error)).toBe(true);
    expect(error.message).toMatch(/^\/image: cannot pull/);
    expect(error.log).toMatch(/pulling .* failed: .*(not found|manifest unknown)/);
  });

  it('a registry that does not answer → resource-unavailable with the message in the log', async () => {
    const port = await freePort();
    const error = await failure(runDirect(engine(), { image: `127.0.0.1:${port}/tcw/down:v1` }));
    expect(TcwError.hasCode(error, ResourceUnavailableError.code)).toBe(true);
    expect(error.log).toMatch(/connection refused/);
  });

  it('a bad image name → malformed-payload naming /image, nothing pulled', async () => {
    const error = await failure(runDirect(engine(), { image: 'Not A/Valid::Name' }));
    expect(MalformedPayloadError.isMalformedPayload(error)).toBe(true);
    expect(error.message).toBe('/image: "Not A/Valid::Name" is not a valid image name');
    expect(error.log).not.toContain('pulling');
  });
});

describe('docker engine: task images (docker save tarballs from artifacts)', () => {
  let server: ArtifactServer;
  let dir: string;
  const made: string[] = [];
  beforeAll(async () => {
    server = await startArtifactServer();
    dir = await mkdtemp(join(tmpdir(), 'tcw-task-image-'));
  });
  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
    for (const id of made) {
      try {
        docker('rmi', '-f', id);
      } catch {
        // already gone (the LRU test removes some)
      }
    }
  });

  /** An image saved to a tarball and removed from dockerd, as an artifact of a producer task. */
  async function publish(compression: 'none' | 'gzip' | 'zstd', name = 'public/image.tar') {
    const tag = `tcw-test/task-image-${rand()}:latest`;
    const marker = `loaded-${rand()}`;
    const id = await buildMarkerImage(tag, marker);
    made.push(id);
    const file = join(dir, `${rand()}.tar`);
    saveImage(tag, file, compression);
    docker('rmi', tag);
    const taskId = `producer${rand()}`;
    server.set(taskId, name, await readFile(file));
    return { taskId, path: name, marker, id, tag };
  }

  it.each(['none', 'gzip', 'zstd'] as const)('loads a %s tarball and runs it', async (compression) => {
    const img = await publish(compression);
    const run = await runDirect(
      engine(),
      { image: { type: 'task-image', taskId: img.taskId, path: img.path }, command: ['cat', '/marker.txt'] },
      { rootUrl: server.rootUrl },
    );
    expect(run.result.success).toBe(true);
    expect(run.log).toContain(img.marker);
    expect(run.log).toContain(`loaded image ${img.tag}`);
    await run.result.dispose();
  });

  it('loads of the same image are deduplicated, and later tasks use the cached image', async () => {
    const img = await publish('gzip');
    const e = engine();
    const payload = {
      image: { type: 'task-image', taskId: img.taskId, path: img.path },
      command: ['cat', '/marker.txt'],
    };
    const before = server.requests.length;
    const runs = await Promise.all([1, 2, 3].map(() => runDirect(e, payload, { rootUrl: server.rootUrl })));
    for (const run of runs) {
      expect(run.log).toContain(img.marker);
      await run.result.dispose();
    }
    const later = await runDirect(e, payload, { rootUrl: server.rootUrl });
    expect(later.log).toContain(img.marker);
    expect(later.log).not.toContain('loading image');
    await later.result.dispose();
    expect(server.requests.slice(before).map((r) => r.artifact)).toEqual([`${img.taskId}/${img.path}`]);
  });

  it('a private artifact is fetched with a signed URL made from the task credentials', async () => {
    const img = await publish('none', 'private/docker/image.tar');
    const before = server.requests.length;
    const run = await runDirect(
      engine(),
      { image: { type: 'task-image', taskId: img.taskId, path: img.path }, command: ['cat', '/marker.txt'] },
      { rootUrl: server.rootUrl, credentials: { clientId: 'task-client', accessToken: 'secret-token' } },
    );
    expect(run.log).toContain(img.marker);
    expect(run.log).not.toContain('secret-token');
    expect(server.requests.slice(before)).toEqual([{ artifact: `${img.taskId}/${img.path}`, signed: true }]);
    await run.result.dispose();
  });

  it('a missing artifact or a file that is not an image → malformed-payload; a queue outage → resource-unavailable', async () => {
    const missing = await failure(
      runDirect(
        engine(),
        { image: { type: 'task-image', taskId: 'nosuchtask', path: 'public/x.tar' } },
        { rootUrl: server.rootUrl },
      ),
    );
    expect(MalformedPayloadError.isMalformedPayload(missing)).toBe(true);
    expect(missing.message).toContain('HTTP 404');
    server.set('notanimage', 'public/x.tar', Buffer.from('just text, not a tarball'));
    const garbage = await failure(
      runDirect(
        engine(),
        { image: { type: 'task-image', taskId: 'notanimage', path: 'public/x.tar' } },
        { rootUrl: server.rootUrl },
      ),
    );
    expect(MalformedPayloadError.isMalformedPayload(garbage)).toBe(true);
    expect(garbage.log).toContain('loading the image failed');
    server.set('outage', 'public/x.tar', { status: 503, body: 'service unavailable' });
    const outage = await failure(
      runDirect(
        engine(),
        { image: { type: 'task-image', taskId: 'outage', path: 'public/x.tar' } },
        { rootUrl: server.rootUrl },
      ),
    );
    expect(TcwError.hasCode(outage, ResourceUnavailableError.code)).toBe(true);
    expect(outage.log).toContain('HTTP 503 service unavailable');
  });

  it('an abort while the image is being fetched ends the preparation', async () => {
    // a server that sends the headers and a first chunk, then stalls
    const stalled = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': '100000000' });
      res.write(Buffer.alloc(1024));
    });
    await new Promise<void>((r) => stalled.listen(0, '127.0.0.1', () => r()));
    const rootUrl = `http://127.0.0.1:${(stalled.address() as AddressInfo).port}`;
    const controller = new AbortController();
    const log = TaskLog.create(join(dir, `abort-${rand()}.log`));
    const preparing = engine().newSandboxBuilder({
      task: taskInfo(`abort${rand()}`, [], rootUrl),
      payload: { image: { type: 'task-image', taskId: 'stalled', path: 'public/image.tar' } },
      log,
      signal: controller.signal,
      logger: silentLogger,
      artifacts: undefined as never,
    });
    setTimeout(() => controller.abort(), 300);
    const error = await failure(preparing);
    expect(TcwError.hasCode(error, ResourceUnavailableError.code)).toBe(true);
    expect(error.message).toBe('image load aborted');
    await log.close();
    stalled.closeAllConnections();
    await new Promise((r) => stalled.close(r));
  });

  it('beyond imageCacheMaxMb the least recently used loaded image is removed', async () => {
    const first = await publish('none');
    const second = await publish('none');
    // each test image is about 2 MB: a 3 MiB cache holds one
    const e = engine({ imageCacheMaxMb: 3 });
    const noCommand = await failure(
      runDirect(
        e,
        { image: { type: 'task-image', taskId: first.taskId, path: first.path } },
        { rootUrl: server.rootUrl },
      ),
    );
    // (the imported test image has no CMD)
    expect(noCommand.message).toBe('/command: the image has no default command: the payload must give one');
    const run1 = await runDirect(
      e,
      { image: { type: 'task-image', taskId: first.taskId, path: first.path }, command: ['true'] },
      { rootUrl: server.rootUrl },
    );
    await run1.result.dispose();
    expect(imageExists(first.id)).toBe(true);
    const run2 = await runDirect(
      e,
      { image: { type: 'task-image', taskId: second.taskId, path: second.path }, command: ['true'] },
      { rootUrl: server.rootUrl },
    );
    await run2.result.dispose();
    expect(imageExists(second.id)).toBe(true);
    expect(imageExists(first.id)).toBe(false);
  });
});
