// Durability `full` and in-process replies: the embedded worker's calls do not wait for the fsync (they cannot
// outlive a crash of the process they are in), but every reply that leaves the process (HTTP) still waits until
// what it could reveal is on disk, a background sync follows in-process changes within 200 ms, and close() syncs.
//
// fdatasync is wrapped to count completed calls; the real one still runs. (A power loss, which is what the sync is
// for, cannot be simulated on this machine; what can be checked is when the syncs happen.)
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type Harness, startHarness, taskcluster, taskDef } from './helpers.js';

const syncs = vi.hoisted(() => ({ count: 0 }));
vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const fdatasync = (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) =>
    real.fdatasync(fd, (error) => {
      if (!error) syncs.count++;
      callback(error);
    });
  return { ...real, fdatasync, default: { ...real, fdatasync } };
});

describe('local queue (durability full): in-process replies and the fsync', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness({ durability: 'full' });
    // whatever start-up wrote is synced by now
    await sleep(300);
  });
  afterEach(async () => {
    await h.close();
  });
  const inProcess = (): any => h.queue.client('queue', h.queue.rootCredentials);

  it('an in-process write answers before its sync; the background sync follows within 200 ms', async () => {
    const before = syncs.count;
    const taskId = taskcluster.slugid();
    await inProcess().createTask(taskId, taskDef());
    expect(syncs.count).toBe(before);
    await sleep(400);
    expect(syncs.count).toBe(before + 1);
    // nothing changed since: a read over HTTP has nothing to wait for
    await h.root.status(taskId);
    expect(syncs.count).toBe(before + 1);
  });

  it('a reply over HTTP after an in-process write waits until the write is on disk', async () => {
    const before = syncs.count;
    const taskId = taskcluster.slugid();
    await inProcess().createTask(taskId, taskDef());
    expect(syncs.count).toBe(before);
    const { status } = await h.root.status(taskId);
    expect(status.state).toBe('pending');
    expect(syncs.count).toBe(before + 1);
  });

  it('an HTTP write waits for its own sync', async () => {
    const before = syncs.count;
    await h.root.createTask(taskcluster.slugid(), taskDef());
    expect(syncs.count).toBe(before + 1);
  });

  it('close() syncs what in-process replies changed', async () => {
    const before = syncs.count;
    await inProcess().createTask(taskcluster.slugid(), taskDef());
    expect(syncs.count).toBe(before);
    await h.queue.close();
    expect(syncs.count).toBe(before + 1);
  });
});
