// One process owns a state directory: a second local queue on it is refused with a message that says so (it
// would otherwise hand out the same tasks), and the directory can be opened again once the first one closed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startLocalQueue } from '../src/index.js';
import { taskcluster, taskDef } from './helpers.js';

describe('local queue: the state directory has one owner', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'local-queue-lock-'));
  afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

  it('refuses a second queue on the same state directory, and reopens it after close', async () => {
    const first = await startLocalQueue({ stateDir, port: 0 });
    const taskId = taskcluster.slugid();
    const q: any = first.client('queue', first.rootCredentials);
    await q.createTask(taskId, taskDef());
    await expect(startLocalQueue({ stateDir, port: 0 })).rejects.toThrow(
      /queue\.sqlite is in use by another local queue/,
    );
    // the first one is unharmed
    const status = await q.status(taskId);
    expect(status.status.state).toBe('pending');
    await first.close();
    const again = await startLocalQueue({ stateDir, port: 0 });
    const q2: any = again.client('queue');
    expect((await q2.status(taskId)).status.state).toBe('pending');
    await again.close();
  });
});
