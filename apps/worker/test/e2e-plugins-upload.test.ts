// End to end, with real processes: artifact uploads of a native-engine `tcw start` through an HTTP proxy in front
// of `tcw queue` that refuses the first data PUTs with 503 (retried, the artifact arrives intact), the content
// encoding of compressible artifacts, and the worker's memory while it uploads a 1 GiB file.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  downloadBuffer,
  downloadSha256,
  type FaultyProxy,
  memoryOf,
  nativeConfig,
  sha256,
  startFaultyProxy,
} from './e2e-plugins-helpers.js';
import {
  BACKING_LOG,
  cleanup,
  createTaskIn,
  downloadText,
  type Proc,
  type QueueProc,
  startQueue,
  tcw,
  tempDir,
  waitForResolution,
  writeConfig,
} from './helpers.js';

const MiB = 1024 * 1024;

describe('artifact uploads of a native-engine worker', () => {
  let dir: string;
  let queue: QueueProc;
  let proxy: FaultyProxy;
  let worker: Proc;
  const taskQueueId = 'tcw-e2e/native-upload';

  beforeAll(async () => {
    dir = await tempDir('tcw-e2e-plugins-upload-');
    queue = await startQueue(join(dir, 'queue'));
    // the first two data PUTs of every object whose name has "flaky" in it get a 503
    proxy = await startFaultyProxy(queue.rootUrl, 2, /flaky/);
    const config = await writeConfig(dir, {
      ...nativeConfig({ queue, workDir: join(dir, 'work'), taskQueueId }),
      rootUrl: proxy.url,
    });
    worker = tcw(['start', '--config', config]);
    await worker.waitFor(/worker started/);
  });

  afterAll(async () => {
    worker?.kill('SIGTERM');
    await worker?.exited;
    await proxy?.close();
    queue?.kill('SIGTERM');
    await queue?.exited;
    await cleanup(dir);
  });

  const submit = (payload: Record<string, unknown>) => createTaskIn(queue, taskQueueId, payload);

  it('503 from the object store on the first PUTs: retried, the artifact arrives intact (sha256 matches)', async () => {
    const taskId = await submit({
      command: ['sh', '-c', 'head -c 3000000 /dev/urandom > flaky.bin && sha256sum flaky.bin'],
      artifacts: [{ type: 'file', path: 'flaky.bin', name: 'public/flaky.bin' }],
    });
    expect((await waitForResolution(queue.queue, taskId, 60_000)).state).toBe('completed');
    const refused = proxy.refusedPuts.filter((p) => p.includes(taskId));
    expect(refused).toHaveLength(2);
    expect(proxy.passedPuts.filter((p) => p.includes(taskId) && p.includes('flaky'))).toHaveLength(1);
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    const expected = /^([0-9a-f]{64}) {2}flaky\.bin$/m.exec(log)![1];
    const data = await downloadBuffer(queue.queue, taskId, 'public/flaky.bin');
    expect(data.length).toBe(3_000_000);
    expect(sha256(data)).toBe(expected);
  });

  it('a compressible artifact is uploaded gzip-encoded, an incompressible one identity', async () => {
    const taskId = await submit({
      command: ['sh', '-c', 'seq 1 50000 > big.txt && head -c 300000 /dev/urandom > r.bin'],
      artifacts: [
        { type: 'file', path: 'big.txt', name: 'public/big.txt' },
        { type: 'file', path: 'r.bin', name: 'public/r.bin' },
      ],
    });
    expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
    // seen on the wire, at the proxy (the local queue stores objects decoded)
    const encodingOf = (file: string) => {
      const puts = proxy.putEncodings.filter((p) => p.path.includes(taskId) && p.path.endsWith(file));
      expect(puts).toHaveLength(1);
      return puts[0]!.encoding;
    };
    expect(encodingOf('big.txt')).toBe('gzip');
    expect(encodingOf('r.bin')).toBe('identity');
    // downloadArtifact decodes: the bytes are the task's
    expect(await downloadText(queue.queue, taskId, 'public/big.txt')).toBe(
      `${Array.from({ length: 50000 }, (_, i) => i + 1).join('\n')}\n`,
    );
  });

  it('a 1 GiB artifact uploads with the worker process growing by less than 64 MB', {
    timeout: 240_000,
  }, async () => {
    const before = await memoryOf(worker.child.pid!);
    const taskId = await submit({
      command: ['sh', '-c', 'head -c 1073741824 /dev/urandom > big.bin && sha256sum big.bin'],
      artifacts: [{ type: 'file', path: 'big.bin', name: 'public/big.bin' }],
    });
    expect((await waitForResolution(queue.queue, taskId, 220_000)).state).toBe('completed');
    const after = await memoryOf(worker.child.pid!);
    const growth = after.peak - before.rss;
    expect(growth, `peak ${after.peak / MiB} MiB, before ${before.rss / MiB} MiB`).toBeLessThan(64 * MiB);
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    const expected = /^([0-9a-f]{64}) {2}big\.bin$/m.exec(log)![1];
    expect(await downloadSha256(queue.queue, taskId, 'public/big.bin')).toBe(expected);
  });
});
