// The one artifact upload path, against the FakeQueue's object store (real local HTTP for the PUTs).
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ArtifactUploader, RunGoneError } from '@tcw/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeQueue } from '../src/index.js';

describe('ArtifactUploader', () => {
  let dir: string;
  let queue: FakeQueue;
  let uploader: ArtifactUploader;
  let taskId: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'uploader-'));
    queue = new FakeQueue({ longPollMs: 1 });
    taskId = queue.createTask({});
    const [claim] = await queue.claimWork('tcw-test/fake', { workerGroup: 'g', workerId: 'w', tasks: 1 });
    uploader = new ArtifactUploader({
      queue,
      taskId,
      runId: 0,
      credentials: () => claim!.credentials,
      taskExpires: claim!.task.expires,
      tempDir: dir,
      putRetries: 3,
    });
  });
  afterEach(async () => {
    await uploader.dispose();
    await queue.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('uploads a small file inline, with its type from the extension', async () => {
    await writeFile(join(dir, 'small.json'), '{"a":1}');
    const up = await uploader.uploadFile({ name: 'public/small.json', path: join(dir, 'small.json') });
    expect(up).toMatchObject({ contentType: 'application/json', contentEncoding: 'identity', size: 7 });
    expect(queue.artifactData(taskId, 'public/small.json').toString()).toBe('{"a":1}');
    expect(
      queue.calls.some((c) => c.method === 'createUpload' && JSON.stringify(c.args).includes('dataInline')),
    ).toBe(true);
  });

  it('sends small compressible content inline as it is: no gzip, no data PUT', async () => {
    const text = 'a short task log line\n'.repeat(100); // 2.2 KB: over the gzip threshold, under 8 KiB
    await writeFile(join(dir, 'short.log'), text);
    queue.failNext('put', 400); // a data PUT would fail the upload
    const up = await uploader.uploadFile({ name: 'public/short.log', path: join(dir, 'short.log') });
    expect(up).toMatchObject({ contentEncoding: 'identity', size: text.length });
    expect(queue.artifactData(taskId, 'public/short.log').toString()).toBe(text);
    const upload = queue.calls.find((c) => c.method === 'createUpload');
    expect(JSON.stringify(upload?.args)).toContain('dataInline');
  });

  it('gzips compressible content on the wire; hashes are of the original bytes', async () => {
    const text = 'a line of log text\n'.repeat(5000);
    await writeFile(join(dir, 'big.log'), text);
    const up = await uploader.uploadFile({ name: 'public/big.log', path: join(dir, 'big.log') });
    expect(up.contentEncoding).toBe('gzip');
    expect(up.sha256).toBe(createHash('sha256').update(text).digest('hex'));
    const artifact = queue.artifacts(taskId).get('public/big.log')!;
    expect(artifact.contentEncoding).toBe('gzip');
    expect(artifact.hashes?.sha256).toBe(up.sha256);
    expect(artifact.data?.toString()).toBe(text);
  });

  it('sends binary content as it is', async () => {
    const data = randomBytes(100_000);
    await writeFile(join(dir, 'blob.bin'), data);
    const up = await uploader.uploadFile({ name: 'public/blob.bin', path: join(dir, 'blob.bin') });
    expect(up).toMatchObject({
      contentEncoding: 'identity',
      contentType: 'application/octet-stream',
      size: 100_000,
    });
    expect(queue.artifactData(taskId, 'public/blob.bin').equals(data)).toBe(true);
  });

  it('retries the PUT on 5xx and the artifact arrives intact', async () => {
    const data = randomBytes(50_000);
    await writeFile(join(dir, 'retry.bin'), data);
    queue.failNext('put', 503, 2);
    const up = await uploader.uploadFile({ name: 'public/retry.bin', path: join(dir, 'retry.bin') });
    expect(up.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    expect(queue.artifactData(taskId, 'public/retry.bin').equals(data)).toBe(true);
  });

  it('gives up on a 4xx PUT', async () => {
    await writeFile(join(dir, 'x.bin'), randomBytes(20_000));
    queue.failNext('put', 403, 1);
    await expect(uploader.uploadFile({ name: 'public/x.bin', path: join(dir, 'x.bin') })).rejects.toThrow(
      /403/,
    );
  });

  it('uploads a stream (spooled to disk first)', async () => {
    const data = randomBytes(30_000);
    await uploader.uploadStream({
      name: 'private/s.bin',
      stream: Readable.from([data.subarray(0, 10), data.subarray(10)]),
    });
    expect(queue.artifactData(taskId, 'private/s.bin').equals(data)).toBe(true);
  });

  it('caps expires at the task expiry and makes error, reference and link artifacts', async () => {
    const far = new Date(Date.now() + 10 * 365 * 86400_000);
    expect(uploader.expiresFor(far)).toBe(new Date(queue.statusOf(taskId).expires).toJSON());
    await uploader.createError('public/missing.txt', 'file-missing-on-worker', 'no such file');
    await uploader.createReference('public/logs/live.log', 'http://example.com/log', 'text/plain');
    await uploader.createLink('public/logs/live.log', 'public/missing.txt');
    const artifacts = queue.artifacts(taskId);
    expect(artifacts.get('public/missing.txt')).toMatchObject({
      storageType: 'error',
      reason: 'file-missing-on-worker',
    });
    expect(artifacts.get('public/logs/live.log')).toMatchObject({
      storageType: 'link',
      artifact: 'public/missing.txt',
    });
  });

  it('a 409 from createArtifact is a RunGoneError', async () => {
    queue.cancelTask(taskId);
    queue.statusOf(taskId);
    // within 25 minutes of an exception artifacts may still be created; a resolved-completed run refuses them
    const other = queue.createTask({});
    const [claim] = await queue.claimWork('tcw-test/fake', { workerGroup: 'g', workerId: 'w', tasks: 1 });
    await queue.reportCompleted(other, 0, claim!.credentials);
    const late = new ArtifactUploader({
      queue,
      taskId: other,
      runId: 0,
      credentials: () => claim!.credentials,
      taskExpires: claim!.task.expires,
      tempDir: dir,
    });
    await writeFile(join(dir, 'late.txt'), 'x');
    const error = await late
      .uploadFile({ name: 'public/late.txt', path: join(dir, 'late.txt') })
      .catch((e) => e);
    expect(RunGoneError.isRunGone(error)).toBe(true);
  });
});
