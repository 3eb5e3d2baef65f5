// End to end with the native engine, with real processes, real users and real cgroups: `tcw queue` and `tcw start`
// (engine: native, per-task users) as child processes, tasks created and observed through the real
// taskcluster-client over HTTP. Needs root on Linux with util-linux and passwd (scripts/ci-system-deps.sh).
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import taskcluster from 'taskcluster-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  ESCAPE_SCRIPT,
  passwdEntry,
  processesMarked,
  processesOfUid,
  processInfo,
  uniqueMarker,
  userOrGroupExists,
} from './e2e-native-helpers.js';
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

describe('tcw start with the native engine (per-task users), against tcw queue', () => {
  let dir: string;
  let queue: QueueProc;
  let worker: Proc;
  let configPath: string;
  /** World-writable: tasks (as their per-task users) leave marker files here. */
  let markers: string;
  const taskQueueId = 'tcw-e2e/native';
  /** In the worker's environment only: it must not reach tasks. */
  const WORKER_SECRET = `worker-env-${taskcluster.slugid()}`;

  beforeAll(async () => {
    dir = await tempDir('tcw-e2e-native-');
    await chmod(dir, 0o755); // a task user may look in; what stops it is the config file's own mode
    markers = join(dir, 'markers');
    await mkdir(markers);
    await chmod(markers, 0o777);
    queue = await startQueue(join(dir, 'queue'));
    configPath = await writeConfig(dir, {
      rootUrl: queue.rootUrl,
      credentials: queue.credentials,
      worker: {
        taskQueueId,
        workerGroup: 'e2e',
        workerId: 'native-1',
        capacity: 2,
        workDir: join(dir, 'work'),
        cancelPollInterval: 0.25,
        abortGracePeriod: 1,
      },
      engine: 'native',
      engines: { native: { user: 'per-task', killGracePeriod: 0.5 } },
      logging: { level: 'debug', pretty: false },
    });
    await chmod(configPath, 0o600);
    worker = tcw(['start', '--config', configPath], { env: { TCW_E2E_WORKER_SECRET: WORKER_SECRET } });
    await worker.waitFor(/worker started/);
  });

  afterAll(async () => {
    await stopAll(worker, queue);
    await cleanup(dir);
  });

  const submit = (payload: Record<string, unknown>) => createTaskIn(queue, taskQueueId, payload);

  it('the config file is 0600 and owned by root (the premise of the tests below)', async () => {
    const s = await stat(configPath);
    expect(s.uid).toBe(0);
    expect(s.mode & 0o777).toBe(0o600);
  });

  it('sequential commands stop at the first failure: the third never runs, the task fails', async () => {
    const third = join(markers, `third-${taskcluster.slugid()}`);
    const taskId = await submit({
      command: [
        ['sh', '-c', 'echo first-command-ran'],
        ['sh', '-c', 'echo second-command-ran; exit 3'],
        ['sh', '-c', `touch ${third}; echo third-command-ran`],
      ],
    });
    const status = await waitForResolution(queue.queue, taskId);
    expect(status.state).toBe('failed');
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    expect(log).toContain('first-command-ran');
    expect(log).toContain('second-command-ran');
    expect(log).toContain('running command 2 of 3');
    expect(log).toContain('the remaining 1 are not run');
    expect(log).not.toContain('third-command-ran');
    expect(log).not.toContain('running command 3 of 3');
    expect(existsSync(third)).toBe(false);
  });

  it('a list of commands that all succeed runs every one, in order, and completes', async () => {
    const taskId = await submit({
      command: [
        ['sh', '-c', 'echo one > order.txt'],
        ['sh', '-c', 'echo two >> order.txt'],
        ['sh', '-c', 'echo "order: $(tr "\\n" , < order.txt)"'],
      ],
    });
    expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
    expect(await downloadText(queue.queue, taskId, BACKING_LOG)).toContain('order: one,two,');
  });

  it("the task gets the payload env and TASK_ID / TASK_WORKDIR / RUN_ID, never the worker's own environment", async () => {
    const taskId = await submit({
      command: ['sh', '-c', 'env; echo "cwd=$(pwd)"'],
      env: { FROM_PAYLOAD: 'payload-value' },
    });
    expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    expect(log).toMatch(/^FROM_PAYLOAD=payload-value$/m);
    expect(log).toMatch(new RegExp(`^TASK_ID=${taskId}$`, 'm'));
    expect(log).toMatch(/^RUN_ID=0$/m);
    const workdir = /^TASK_WORKDIR=(.+)$/m.exec(log)?.[1];
    expect(workdir).toMatch(/\/tcw-task-[0-9a-f]{8}$/);
    expect(log).toContain(`cwd=${workdir}`);
    expect(log).toMatch(new RegExp(`^HOME=${workdir}$`, 'm'));
    expect(log).not.toContain(WORKER_SECRET);
    expect(log).not.toContain('TCW_E2E_WORKER_SECRET');
    expect(log).not.toContain(queue.credentials.accessToken);
  });

  it('a command that does not exist fails the task (not an exception), naming it in the log', async () => {
    const taskId = await submit({ command: ['tcw-e2e-no-such-command', '--flag'] });
    expect((await waitForResolution(queue.queue, taskId)).state).toBe('failed');
    expect(await downloadText(queue.queue, taskId, BACKING_LOG)).toContain('tcw-e2e-no-such-command');
  });

  it('a payload with an empty command is malformed-payload naming /command', async () => {
    const taskId = await submit({ command: [] });
    const status = await waitForResolution(queue.queue, taskId);
    expect(status).toMatchObject({ state: 'exception', reasonResolved: 'malformed-payload' });
    expect(await downloadText(queue.queue, taskId, BACKING_LOG)).toMatch(/\/command/);
  });

  describe('no process outlives its task (setsid grandchild and double-forked daemon)', () => {
    /** What a task's log says about who ran it (ESCAPE_SCRIPT prints it). */
    const taskUserOf = (log: string) => {
      const m = /escapees-started task-uid=(\d+) task-user=(\S+)/.exec(log);
      expect(m, 'the task printed its user').toBeTruthy();
      return { uid: Number(m![1]), name: m![2]! };
    };

    /** Nothing of the task is left: no marked process, no process of its user, and the user is deleted. */
    const expectNothingLeft = async (mark: string, user: { uid: number; name: string }) => {
      expect(await processesMarked(mark)).toEqual([]);
      expect(user.uid).toBeGreaterThan(0);
      // processes the engine killed may still be on their way out (their memory released, so no marker, but not
      // yet zombies) for a moment after the run resolves: allow them a few seconds to finish exiting
      await until(
        async () => (await processesOfUid(user.uid)).length === 0,
        5_000,
        `no process of uid ${user.uid} left`,
      );
      await until(
        async () => !(await userOrGroupExists(user.name)),
        10_000,
        `${user.name} and its group deleted`,
      );
    };

    it('cancelTask: every marked process is gone and the run is canceled', async () => {
      const mark = uniqueMarker();
      const taskId = await submit({
        command: ['sh', '-c', `${ESCAPE_SCRIPT}\nsleep 3600`],
        env: { TCW_E2E_MARK: mark },
      });
      // the task's sh, the setsid sleep, the daemon (exec'd to sleep) and its sleep child
      const first = await until(
        async () => {
          const found = await processesMarked(mark);
          return found.length >= 4 ? found : undefined;
        },
        20_000,
        'the task and its escapees started',
      );
      const uid = (await processInfo(first[0]!))?.uid;
      expect(uid).toBeGreaterThan(0);
      const name = (await readFile('/etc/passwd', 'utf8'))
        .split('\n')
        .find((l) => l.split(':')[2] === String(uid))
        ?.split(':')[0];
      expect(name).toMatch(/^tcw-task-[0-9a-f]{8}$/);
      const home = (await passwdEntry(name!))!.home;
      await until(async () => existsSync(join(home, 'escapees.ready')), 20_000, 'the task said it is ready');

      const pids = await processesMarked(mark);
      const infos = (await Promise.all(pids.map(processInfo))).filter((i) => i !== undefined);
      // they really escaped: new sessions, and a daemon whose parent (the task's subshell) is gone
      expect(new Set(infos.map((i) => i.session)).size).toBeGreaterThanOrEqual(3);
      expect(infos.filter((i) => !pids.includes(i.ppid)).length).toBeGreaterThanOrEqual(2);
      // all run as the task's own user, not root
      expect(new Set(infos.map((i) => i.uid))).toEqual(new Set([uid]));

      await queue.queue.cancelTask(taskId);
      await until(
        async () => (await processesMarked(mark)).length === 0,
        10_000,
        `every marked process gone (left: ${await processesMarked(mark)})`,
      );
      const status = await waitForResolution(queue.queue, taskId);
      expect(status).toMatchObject({ state: 'exception', reasonResolved: 'canceled' });
      await expectNothingLeft(mark, { uid: uid!, name: name! });
      // the log of the cancelled run is still uploaded
      await until(
        async () =>
          (await downloadText(queue.queue, taskId, BACKING_LOG).catch(() => '')).includes(
            'escapees-started',
          ) || undefined,
        10_000,
        'log of the cancelled run uploaded',
      );
    });

    it('maxRunTime 1: the task fails and no marked process remains once it is resolved', async () => {
      const mark = uniqueMarker();
      const taskId = await submit({
        command: ['sh', '-c', `${ESCAPE_SCRIPT}\nsleep 3600`],
        env: { TCW_E2E_MARK: mark },
        maxRunTime: 1,
      });
      const status = await waitForResolution(queue.queue, taskId);
      expect(status.state).toBe('failed');
      expect(await processesMarked(mark)).toEqual([]);
      const log = await downloadText(queue.queue, taskId, BACKING_LOG);
      expect(log).toContain('maxRunTime exceeded');
      await expectNothingLeft(mark, taskUserOf(log));
    });

    it('a normal exit: the task completes and the processes it left running are ended', async () => {
      const mark = uniqueMarker();
      const taskId = await submit({ command: ['sh', '-c', ESCAPE_SCRIPT], env: { TCW_E2E_MARK: mark } });
      const status = await waitForResolution(queue.queue, taskId);
      expect(status.state).toBe('completed');
      expect(await processesMarked(mark)).toEqual([]);
      const log = await downloadText(queue.queue, taskId, BACKING_LOG);
      expect(log).toMatch(/ended \d+ process\(es\) the task left running/);
      await expectNothingLeft(mark, taskUserOf(log));
    });

    it('an escapee that ignores SIGTERM is killed after the grace period all the same', async () => {
      const mark = uniqueMarker();
      const taskId = await submit({
        command: [
          'sh',
          '-c',
          `(setsid sh -c 'trap "" TERM; while :; do sleep 0.1; done' &)\n${ESCAPE_SCRIPT}`,
        ],
        env: { TCW_E2E_MARK: mark },
      });
      const status = await waitForResolution(queue.queue, taskId);
      expect(status.state).toBe('completed');
      expect(await processesMarked(mark)).toEqual([]);
      await expectNothingLeft(mark, taskUserOf(await downloadText(queue.queue, taskId, BACKING_LOG)));
    });
  });

  it('per-task user: created for the task, owns its files, deleted with its home afterwards', async () => {
    const tag = taskcluster.slugid();
    const info = join(markers, `user-${tag}`);
    const release = join(markers, `release-${tag}`);
    const taskId = await submit({
      command: [
        'sh',
        '-c',
        [
          'echo data > made.txt',
          `echo "$(id -un) $(id -u) $TASK_WORKDIR $HOME" > ${info}.tmp && mv ${info}.tmp ${info}`,
          'echo "task-uid=$(id -u)"',
          `i=0; while [ ! -f ${release} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done`,
          `[ -f ${release} ]`,
        ].join('\n'),
      ],
    });
    await until(async () => existsSync(info), 20_000, 'the task wrote who it runs as');
    const [name, uidText, workdir, home] = (await readFile(info, 'utf8')).trim().split(' ');
    const uid = Number(uidText);
    // while it runs: a fresh user, not root, in /etc/passwd, its home is the task directory it owns
    expect(name).toMatch(/^tcw-task-[0-9a-f]{8}$/);
    expect(uid).toBeGreaterThan(0);
    expect(await passwdEntry(name!)).toMatchObject({ uid, home: workdir });
    expect(home).toBe(workdir);
    expect((await stat(workdir!)).uid).toBe(uid);
    expect((await stat(join(workdir!, 'made.txt'))).uid).toBe(uid);
    expect((await stat(info)).uid).toBe(uid);
    await writeFile(release, '');
    const status = await waitForResolution(queue.queue, taskId);
    expect(status.state).toBe('completed');
    expect(await downloadText(queue.queue, taskId, BACKING_LOG)).toContain(`task-uid=${uid}`);
    // after it (the worker resolves first, then disposes of the task's sandbox): the user and its home are gone
    await until(
      async () => !(await userOrGroupExists(name!)) && !existsSync(workdir!),
      10_000,
      `user ${name}, its group and its home ${workdir} deleted`,
    );
  });

  it("a per-task user can neither read the worker's environment through /proc nor signal the worker", async () => {
    const pid = worker.child.pid!;
    const taskId = await submit({
      command: [
        'sh',
        '-c',
        [
          `if cat /proc/${pid}/environ; then echo ENVIRON-READ; fi`,
          `if kill -TERM ${pid}; then echo SIGNALLED-THE-WORKER; else echo "could not signal the worker"; fi`,
        ].join('\n'),
      ],
    });
    expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    expect(log).toContain(`/proc/${pid}/environ: Permission denied`);
    expect(log).toContain('could not signal the worker');
    expect(log).not.toContain('ENVIRON-READ');
    expect(log).not.toContain('SIGNALLED-THE-WORKER');
    expect(log).not.toContain(WORKER_SECRET);
    expect(worker.child.exitCode).toBeNull();
    // and the worker still takes tasks
    const next = await submit({ command: ['true'] });
    expect((await waitForResolution(queue.queue, next)).state).toBe('completed');
  });

  it("two tasks at once run as two different users, and neither can read the other's task directory", async () => {
    const tag = taskcluster.slugid();
    const script = (me: string, other: string) =>
      [
        'echo "secret of $TASK_ID" > mine.txt',
        `echo "$TASK_WORKDIR" > ${join(markers, `${tag}-${me}.tmp`)} && mv ${join(markers, `${tag}-${me}.tmp`)} ${join(markers, `${tag}-${me}`)}`,
        `i=0; while [ ! -f ${join(markers, `${tag}-${other}`)} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done`,
        `other=$(cat ${join(markers, `${tag}-${other}`)})`,
        'echo "me=$(id -u) other-dir-owner=$(stat -c %u "$other")"',
        'if cat "$other/mine.txt"; then echo READ-THE-OTHER; else echo "could not read the other task"; fi',
        // stay until the other one has looked too
        `touch ${join(markers, `${tag}-${me}-done`)}`,
        `i=0; while [ ! -f ${join(markers, `${tag}-${other}-done`)} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done`,
      ].join('\n');
    const [a, b] = await Promise.all([
      submit({ command: ['sh', '-c', script('a', 'b')] }),
      submit({ command: ['sh', '-c', script('b', 'a')] }),
    ]);
    const statuses = await Promise.all([a, b].map((id) => waitForResolution(queue.queue, id)));
    expect(statuses.map((s) => s.state)).toEqual(['completed', 'completed']);
    const logs = await Promise.all([a, b].map((id) => downloadText(queue.queue, id, BACKING_LOG)));
    const uids = logs.map((log) => {
      const m = /me=(\d+) other-dir-owner=(\d+)/.exec(log);
      expect(m, log).toBeTruthy();
      expect(m![1]).not.toBe(m![2]);
      expect(log).toContain('Permission denied');
      expect(log).toContain('could not read the other task');
      expect(log).not.toContain('READ-THE-OTHER');
      expect(log).not.toContain('secret of');
      return Number(m![1]);
    });
    expect(uids[0]).not.toBe(uids[1]);
    expect(uids.every((u) => u > 0)).toBe(true);
  });

  it("a task running as a per-task user cannot read the worker's config file", async () => {
    const taskId = await submit({ command: ['cat', configPath] });
    const status = await waitForResolution(queue.queue, taskId);
    expect(status.state).toBe('failed');
    const log = await downloadText(queue.queue, taskId, BACKING_LOG);
    expect(log).toContain(`cat: ${configPath}: Permission denied`);
    expect(log).not.toContain(queue.credentials.accessToken);
  });

  it('artifacts from the task directory are downloadable with taskcluster.downloadArtifact', async () => {
    const taskId = await submit({
      command: [
        'sh',
        '-c',
        'mkdir -p out/sub && echo \'{"ok":true}\' > result.json && echo alpha > out/a.txt && echo beta > out/sub/b.txt',
      ],
      artifacts: [
        { type: 'file', path: 'result.json', name: 'public/result.json' },
        { type: 'directory', path: 'out', name: 'public/out' },
      ],
    });
    expect((await waitForResolution(queue.queue, taskId)).state).toBe('completed');
    expect(await downloadText(queue.queue, taskId, 'public/result.json')).toBe('{"ok":true}\n');
    expect(await downloadText(queue.queue, taskId, 'public/out/a.txt')).toBe('alpha\n');
    expect(await downloadText(queue.queue, taskId, 'public/out/sub/b.txt')).toBe('beta\n');
  });

  it("artifacts cannot smuggle out root's files through symlinks (file and folder entries)", async () => {
    const taskId = await submit({
      command: [
        'sh',
        '-c',
        'mkdir out && echo fine > out/ok.txt && ln -s /etc/shadow out/shadow && ln -s /etc/shadow shadow.txt && ln -s /etc out/etc',
      ],
      artifacts: [
        { type: 'file', path: 'shadow.txt', name: 'public/shadow.txt' },
        { type: 'directory', path: 'out', name: 'public/out' },
      ],
    });
    const status = await waitForResolution(queue.queue, taskId);
    expect(status).toMatchObject({ state: 'exception', reasonResolved: 'malformed-payload' });
    expect(await downloadText(queue.queue, taskId, BACKING_LOG)).toContain('/artifacts/0/path');
    // the folder's regular file is uploaded; nothing through a symlink is
    expect(await downloadText(queue.queue, taskId, 'public/out/ok.txt')).toBe('fine\n');
    const { artifacts } = await queue.queue.listLatestArtifacts(taskId);
    const kinds = Object.fromEntries(
      (artifacts as Array<{ name: string; storageType: string }>).map((a) => [a.name, a.storageType]),
    );
    expect(kinds).toMatchObject({
      'public/shadow.txt': 'error',
      'public/out/shadow': 'error',
      'public/out/etc': 'error',
      'public/out/ok.txt': 'object',
    });
    expect(Object.keys(kinds).filter((n) => n.startsWith('public/out/etc/'))).toEqual([]);
    const shadow = await readFile('/etc/shadow', 'utf8');
    for (const name of ['public/shadow.txt', 'public/out/shadow', 'public/out/etc/shadow']) {
      const text = await downloadText(queue.queue, taskId, name).catch(
        (error: Error) => `refused: ${error.message}`,
      );
      expect(text, name).toMatch(/^refused: .*(symlink that leaves the task directory|not found)/);
      expect(text).not.toContain(shadow.split('\n')[0]);
    }
  });
});

describe('tcw start with the native engine: memory limit, graceful shutdown, crash recovery', () => {
  let dir: string;
  let queue: QueueProc;
  let worker: Proc;
  let config: string;
  const taskQueueId = 'tcw-e2e/native-limits';
  const memory = 64 * 1024 * 1024;

  beforeAll(async () => {
    dir = await tempDir('tcw-e2e-native-limits-');
    queue = await startQueue(join(dir, 'queue'));
    config = await writeConfig(dir, {
      rootUrl: queue.rootUrl,
      credentials: queue.credentials,
      worker: {
        taskQueueId,
        workerGroup: 'e2e',
        workerId: 'native-2',
        capacity: 1,
        workDir: join(dir, 'work'),
        cancelPollInterval: 0.25,
        abortGracePeriod: 1,
        shutdownGracePeriod: 1,
      },
      engine: 'native',
      engines: { native: { user: 'per-task', killGracePeriod: 0.5, limits: { memory, pids: 256 } } },
      logging: { level: 'debug', pretty: false },
    });
    worker = tcw(['start', '--config', config]);
    await worker.waitFor(/worker started/);
  });

  afterAll(async () => {
    if (worker && worker.child.exitCode === null) {
      worker.kill('SIGTERM');
      await worker.exited;
    }
    queue?.kill('SIGTERM');
    await queue?.exited;
    await cleanup(dir);
  });

  const submit = (payload: Record<string, unknown>) => createTaskIn(queue, taskQueueId, payload);

  it('a task over its memory limit fails with a clear line in the log; the worker runs the next task', async () => {
    const hog = await submit({
      command: [process.execPath, '-e', 'const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));'],
    });
    expect((await waitForResolution(queue.queue, hog)).state).toBe('failed');
    expect(await downloadText(queue.queue, hog, BACKING_LOG)).toContain(
      `the task was killed: it used more than its memory limit (${memory} bytes)`,
    );
    const next = await submit({ command: ['echo', 'still-alive'] });
    expect((await waitForResolution(queue.queue, next)).state).toBe('completed');
    expect(await downloadText(queue.queue, next, BACKING_LOG)).toContain('still-alive');
  });

  it('SIGTERM to the worker during a task: worker-shutdown, nothing of the task is left, exit 0', async () => {
    const mark = uniqueMarker();
    const taskId = await submit({
      command: ['sh', '-c', `${ESCAPE_SCRIPT}\nsleep 3600`],
      env: { TCW_E2E_MARK: mark },
    });
    const pids = await until(
      async () => {
        const found = await processesMarked(mark);
        return found.length >= 4 ? found : undefined;
      },
      20_000,
      'the task and its escapees started',
    );
    const uid = (await processInfo(pids[0]!))!.uid;
    expect(uid).toBeGreaterThan(0);
    worker.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    // the worker exits only after disposing of the task: everything is gone by now
    expect(await processesMarked(mark)).toEqual([]);
    expect(await processesOfUid(uid)).toEqual([]);
    // the run is resolved worker-shutdown, and the queue schedules a retry
    const { status } = await queue.queue.status(taskId);
    expect(status.runs[0]).toMatchObject({ state: 'exception', reasonResolved: 'worker-shutdown' });
    expect(status.runs[1]).toMatchObject({ state: 'pending', reasonCreated: 'retry' });
    await queue.queue.cancelTask(taskId); // not for the next worker of this file
    const passwd = await readFile('/etc/passwd', 'utf8');
    expect(passwd.split('\n').some((l) => l.split(':')[2] === String(uid) && l.startsWith('tcw-task-'))).toBe(
      false,
    );
  });

  it('after the worker is SIGKILLed mid-task, the next worker on the same work dir ends its processes and deletes its user', async () => {
    worker = tcw(['start', '--config', config]);
    await worker.waitFor(/worker started/);
    const mark = uniqueMarker();
    await submit({ command: ['sh', '-c', `${ESCAPE_SCRIPT}\nsleep 3600`], env: { TCW_E2E_MARK: mark } });
    const pids = await until(
      async () => {
        const found = await processesMarked(mark);
        return found.length >= 4 ? found : undefined;
      },
      20_000,
      'the task and its escapees started',
    );
    const uid = (await processInfo(pids[0]!))!.uid;
    const name = (await readFile('/etc/passwd', 'utf8'))
      .split('\n')
      .find((l) => l.split(':')[2] === String(uid))
      ?.split(':')[0];
    expect(name).toMatch(/^tcw-task-[0-9a-f]{8}$/);
    worker.kill('SIGKILL');
    await worker.exited;
    // a crash ends nothing by itself: the task's processes and its user outlive the worker
    expect((await processesMarked(mark)).length).toBeGreaterThanOrEqual(3);
    expect(await passwdEntry(name!)).toBeDefined();

    // a worker on another work folder (same host, same cgroup) leaves them alone: they are not its leftovers
    const otherDir = join(dir, 'other');
    await mkdir(otherDir, { recursive: true });
    const other = tcw([
      'start',
      '--config',
      await writeConfig(otherDir, {
        ...(parse(await readFile(config, 'utf8')) as Record<string, unknown>),
        worker: {
          taskQueueId: 'tcw-e2e/native-other',
          workerGroup: 'e2e',
          workerId: 'native-3',
          workDir: join(otherDir, 'work'),
        },
      }),
    ]);
    await other.waitFor(/worker started/);
    other.kill('SIGTERM');
    expect(await other.exited).toBe(0);
    expect((await processesMarked(mark)).length).toBeGreaterThanOrEqual(3);
    expect(await passwdEntry(name!)).toBeDefined();

    worker = tcw(['start', '--config', config]);
    await worker.waitFor(/worker started/);
    await until(
      async () => (await processesMarked(mark)).length === 0 && !(await userOrGroupExists(name!)),
      10_000,
      `the leftovers of the dead worker removed (processes: ${await processesMarked(mark)})`,
    );
    expect(await processesOfUid(uid)).toEqual([]);
  });
});
