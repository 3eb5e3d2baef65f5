// End to end, with real processes: artifact uploads of a native-engine `tcw start` through an HTTP proxy in front
// of `tcw queue` that refuses the first data PUTs with 503 (retried, the artifact arrives intact), the content
// encoding of compressible artifacts, and the worker's memory while it uploads a 1 GiB file.
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
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
  stopAll,
  tcw,
  tempDir,
  until,
  waitForResolution,
  writeConfig,
} from './helpers.js';

const MiB = 1024 * 1024;
const run = promisify(execFile);

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

describe('a full disk under the work folder (a real 2 MiB tmpfs)', () => {
  let dir: string;
  let workDir: string;
  let queue: QueueProc;
  let worker: Proc;
  const taskQueueId = 'tcw-e2e/native-full-disk';

  beforeAll(async () => {
    dir = await tempDir('tcw-e2e-full-disk-');
    workDir = join(dir, 'work');
    await mkdir(workDir);
    await run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tcw-e2e-full-disk', workDir]);
    // a short claimWork long-poll: an idle worker's loop comes round every second
    const queueConfig = join(dir, 'queue.json');
    await writeFile(queueConfig, JSON.stringify({ claimWorkTimeout: 1 }));
    queue = await startQueue(join(dir, 'queue'), ['--config', queueConfig]);
    const config = nativeConfig({ queue, workDir, taskQueueId });
    // the tasks' own folders elsewhere: only the worker's files (the task log) are on the small disk
    (config.engines as { native: Record<string, unknown> }).native.tasksDir = join(dir, 'tasks');
    // claim only with 1 MiB free (the default 64 MiB is more than this whole disk)
    (config.worker as Record<string, unknown>).minFreeSpace = 1;
    worker = tcw(['start', '--config', await writeConfig(dir, config)]);
    await worker.waitFor(/worker started/);
  });

  afterAll(async () => {
    await stopAll(worker, queue);
    await run('umount', [workDir]).catch(() => {});
    await cleanup(dir);
  });

  it('a task whose log fills the disk: exception internal-error, the worker lives on and runs the next task', async () => {
    const flood = await createTaskIn(queue, taskQueueId, {
      command: ['sh', '-c', 'yes flood | head -c 5000000; echo flood-done; sleep 30'],
    });
    const status = await waitForResolution(queue.queue, flood, 30_000);
    expect(status).toMatchObject({ state: 'exception', reasonResolved: 'internal-error' });
    expect(worker.child.exitCode).toBeNull();
    expect(worker.stderr()).toContain('the task log cannot be written');
    expect(worker.stderr()).toMatch(/"lostBytes":\d+.*part of the task log could not be written/);
    // what fitted was uploaded (uncompressed: there was no room for a gzip copy either)
    expect(worker.stderr()).toContain('no room to gzip an upload; sending it uncompressed');
    const log = await downloadText(queue.queue, flood, BACKING_LOG);
    expect(log.length).toBeGreaterThan(100_000);
    expect(log).toMatch(/^flood$/m);
    expect(log).not.toContain('flood-done');

    // its log is removed with it: the disk has room again, and the worker claims the next task only then
    const next = await createTaskIn(queue, taskQueueId, { command: ['echo', 'after-the-flood'] });
    expect((await waitForResolution(queue.queue, next)).state).toBe('completed');
    expect(await downloadText(queue.queue, next, BACKING_LOG)).toContain('after-the-flood');
  });

  it('with less free space than worker.minFreeSpace it claims nothing, and claims as soon as there is', async () => {
    const count = (text: string) => worker.stderr().split(text).length - 1;
    const low = 'too little free space in the work folder: not claiming until there is more';
    const again = 'enough free space in the work folder again; claiming';
    const [lowBefore, againBefore] = [count(low), count(again)];
    const filler = join(workDir, 'filler');
    await run('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k', 'count=24']); // 1.5 MiB of 2: under 1 MiB free
    // the claimWork long-poll in flight ends within a second (the queue's claimWorkTimeout), then the loop stops
    await until(async () => count(low) > lowBefore, 10_000, 'the worker saw the disk full');
    const taskId = await createTaskIn(queue, taskQueueId, { command: ['echo', 'waited-for-space'] });
    await new Promise((r) => setTimeout(r, 1500));
    expect((await queue.queue.status(taskId)).status.state).toBe('pending');
    await rm(filler);
    expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
    expect(count(again)).toBe(againBefore + 1);
    expect(await downloadText(queue.queue, taskId, BACKING_LOG)).toContain('waited-for-space');
  });
});

describe('a task log over worker.maxLogSize', () => {
  let dir: string;
  let queue: QueueProc;
  let worker: Proc;
  const taskQueueId = 'tcw-e2e/native-log-limit';

  beforeAll(async () => {
    dir = await tempDir('tcw-e2e-log-limit-');
    queue = await startQueue(join(dir, 'queue'));
    const config = nativeConfig({ queue, workDir: join(dir, 'work'), taskQueueId });
    (config.worker as Record<string, unknown>).maxLogSize = 0.25; // MiB: 256 KiB of head, then a 64 KiB tail
    worker = tcw(['start', '--config', await writeConfig(dir, config)]);
    await worker.waitFor(/worker started/);
  });

  afterAll(async () => {
    await stopAll(worker, queue);
    await cleanup(dir);
  });

  it('keeps the head and the end (the task result), says what was dropped; the task resolves by its exit code', async () => {
    const taskId = await createTaskIn(queue, taskQueueId, {
      command: ['sh', '-c', 'echo first-line; seq 1 400000; echo last-line >&2; exit 3'],
    });
    expect((await waitForResolution(queue.queue, taskId)).state).toBe('failed');
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    expect(log).toContain('first-line');
    expect(log).toMatch(
      /\[taskcluster:warn [^\]]+\] The log has reached its limit of 256 KiB: what follows is dropped, except its last 64 KiB, written when the task ends\.\n/,
    );
    expect(log).toMatch(
      /\[taskcluster:warn [^\]]+\] [\d.]+ (KiB|MiB) of the log were dropped here \(its limit is 256 KiB\); the last 64 KiB follow\.\n/,
    );
    // the end survives: the last numbers, the task's last line, the worker's verdict
    expect(log).toMatch(/^399999\n400000\n/m);
    expect(log).toContain('last-line');
    expect(log).toMatch(/=== Task Finished === failure after [\d.]+ s \(exit code 3\)\n$/);
    // seq wrote 2.5 MB: what is kept is the limit, the tail and two notices
    expect(Buffer.byteLength(log)).toBeLessThan(256 * 1024 + 64 * 1024 + 1024);
    expect(log).not.toMatch(/^200000$/m);
  });
});
