// Interface tests of the native engine with real processes, real signals, real users and real cgroups. They need
// root on Linux with util-linux and passwd (the CI host: scripts/ci-system-deps.sh); nothing here is mocked.
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, silentLogger, TcwError } from '@tcw/core';
import { runSandbox } from '@tcw/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { createNativeEngine } from '../src/index.js';
import { alive, processesWith, startEngine, until, userExists } from './helpers.js';

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  const failures: unknown[] = [];
  for (const cleanup of cleanups) await cleanup().catch((e: unknown) => failures.push(e));
  expect(failures).toEqual([]);
});

async function engineWith(options: Parameters<typeof startEngine>[0] = {}) {
  const started = await startEngine(options);
  cleanups.push(started.cleanup);
  return started.engine;
}

async function readdirSafe(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

function marker(): string {
  return `tcw-marker-${Math.random().toString(36).slice(2)}`;
}

/** A task that leaves a setsid grandchild and a double-forked daemon behind, all carrying `mark` in their env. */
const escapeScript = [
  'setsid sleep 3600 &',
  "(setsid sh -c 'sleep 3600 & exit 0' &)",
  'sleep 0.2',
  'echo escapees-started',
].join('\n');
const escapees = ['sh', '-c', escapeScript];

describe('commands', () => {
  it('runs a list of commands in order and stops at the first failure', async () => {
    const engine = await engineWith();
    const run = await runSandbox(engine, {
      command: [
        ['echo', 'first'],
        ['sh', '-c', 'echo second; exit 3'],
        ['echo', 'third'],
      ],
    });
    const log = await run.log();
    expect(log).toContain('first');
    expect(log).toContain('second');
    expect(log).not.toMatch(/^third$/m);
    expect(log).toContain('the remaining 1 are not run');
    expect(run.result.success).toBe(false);
    expect(run.result.exitCode).toBe(3);
    await run.dispose();
  });

  it('gives the task TASK_WORKDIR (its cwd, fresh, removed after the task), TASK_ID and RUN_ID', async () => {
    const engine = await engineWith();
    const run = await runSandbox(engine, {
      command: [
        'sh',
        '-c',
        'echo "wd=$TASK_WORKDIR pwd=$(pwd) id=$TASK_ID run=$RUN_ID"; ls -A | grep -c tcw || true',
      ],
    });
    const log = await run.log();
    const wd = /wd=(\S+)/.exec(log)![1]!;
    expect(log).toContain(`pwd=${wd}`);
    expect(log).toContain(`id=${run.taskId} run=0`);
    expect((await stat(wd)).isDirectory()).toBe(true);
    await run.dispose();
    await expect(stat(wd)).rejects.toThrow(/ENOENT/);
  });

  it('keeps task dirs with keepTaskDirs (current user, allowRoot)', async () => {
    const engine = await engineWith({ user: 'current', allowRoot: true, keepTaskDirs: true });
    const run = await runSandbox(engine, {
      command: ['sh', '-c', 'echo kept > f.txt; echo "wd=$TASK_WORKDIR"'],
    });
    const wd = /wd=(\S+)/.exec(await run.log())![1]!;
    await run.dispose();
    expect(await readFile(join(wd, 'f.txt'), 'utf8')).toBe('kept\n');
    await rm(wd, { recursive: true, force: true });
  });

  it('a command that does not exist fails the task (exit 127)', async () => {
    const engine = await engineWith();
    const run = await runSandbox(engine, { command: ['/no/such/program'] });
    expect(run.result.success).toBe(false);
    expect(run.result.exitCode).toBe(127);
    expect(await run.log()).toContain('not found');
    await run.dispose();
  });
});

describe('artifacts', () => {
  it('refuses symlinks that leave the task dir, in extractFile and extractFolder', async () => {
    const engine = await engineWith();
    const run = await runSandbox(engine, {
      command: [
        'sh',
        '-c',
        'mkdir out; echo ok > out/a.txt; ln -s /etc/passwd out/evil; ln -s /etc passwd-dir',
      ],
    });
    expect(run.result.success).toBe(true);
    await expect(run.result.extractFile!('out/evil')).rejects.toMatchObject({
      code: 'ERR_MALFORMED_PAYLOAD',
    });
    await expect(run.result.extractFile!('passwd-dir/passwd')).rejects.toMatchObject({
      code: 'ERR_MALFORMED_PAYLOAD',
    });
    await expect(run.result.extractFile!('/etc/passwd')).rejects.toMatchObject({
      code: 'ERR_MALFORMED_PAYLOAD',
    });
    await expect(run.result.extractFile!('nothing.txt')).rejects.toMatchObject({ code: 'ENOENT' });
    const seen: Record<string, string> = {};
    await run.result.extractFolder!('out', async (rel, file) => {
      seen[rel] = 'refused' in file ? `refused: ${file.refused}` : 'file';
      if (!('refused' in file)) file.stream.destroy();
    });
    expect(seen['a.txt']).toBe('file');
    expect(seen.evil).toMatch(/^refused: .*leaves the task directory/);
    await run.dispose();
  });

  it('a folder given to extractFile is EISDIR, a file given to extractFolder ENOTDIR (not a malformed payload)', async () => {
    const engine = await engineWith();
    const run = await runSandbox(engine, { command: ['sh', '-c', 'mkdir folder; echo x > file.txt'] });
    expect(run.result.success).toBe(true);
    await expect(run.result.extractFile!('folder')).rejects.toMatchObject({ code: 'EISDIR' });
    await expect(run.result.extractFolder!('file.txt', async () => {})).rejects.toMatchObject({
      code: 'ENOTDIR',
    });
    await run.dispose();
  });
});

describe('no process outlives its task', () => {
  for (const mode of ['cgroups', 'per-task user without cgroups'] as const) {
    it(`${mode}: aborting ends setsid grandchildren and double-forked daemons`, async () => {
      const engine = await engineWith(mode === 'cgroups' ? {} : { cgroups: 'off' });
      const mark = marker();
      const run = await runSandbox(
        engine,
        { command: ['sh', '-c', `${escapeScript}\nsleep 3600`] },
        {
          configure: (b) => b.setEnv('TCW_MARK', mark),
          onStarted: async (sandbox) => {
            expect(await until(async () => (await processesWith(mark)).length >= 3, 10_000)).toBe(true);
            await sandbox.abort({ graceMs: 200 });
          },
        },
      );
      expect(run.result.aborted).toBe(true);
      expect(run.result.success).toBe(false);
      expect(await processesWith(mark)).toEqual([]);
      await run.dispose();
    });

    it(`${mode}: a normal exit ends what the task left running`, async () => {
      const engine = await engineWith(mode === 'cgroups' ? { killGracePeriod: 0.2 } : { cgroups: 'off' });
      const mark = marker();
      const run = await runSandbox(
        engine,
        { command: escapees },
        { configure: (b) => b.setEnv('TCW_MARK', mark) },
      );
      expect(run.result.success).toBe(true);
      // with cgroups the engine ends them (and says so); without, the PID namespace's end killed them already
      if (mode === 'cgroups')
        expect(await run.log()).toMatch(/ended \d+ process\(es\) the task left running/);
      expect(await processesWith(mark)).toEqual([]);
      await run.dispose();
    });
  }

  it('a daemon started by one command is still there for the next one (same task)', async () => {
    const engine = await engineWith();
    const run = await runSandbox(engine, {
      command: [
        ['sh', '-c', "(setsid sh -c 'echo $$ > daemon.tmp && mv daemon.tmp daemon.pid; exec sleep 3600' &)"],
        [
          'sh',
          '-c',
          'i=0; while [ ! -f daemon.pid ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; kill -0 "$(cat daemon.pid)" && echo "daemon-alive $(cat daemon.pid)"',
        ],
      ],
    });
    const pid = Number(/daemon-alive (\d+)/.exec(await run.log())?.[1]);
    expect(pid).toBeGreaterThan(0);
    // and it is gone with the task
    expect(await alive(pid)).toBe(false);
    await run.dispose();
  });

  it('SIGTERM comes first: a task that traps it can clean up within the grace period', async () => {
    const engine = await engineWith();
    const ready = join(tmpdir(), `${marker()}.ready`); // the task says when its trap is set
    const run = await runSandbox(
      engine,
      {
        command: [
          'sh',
          '-c',
          `trap "echo got-term; exit 0" TERM; touch ${ready}; while :; do sleep 0.05; done`,
        ],
      },
      {
        onStarted: async (sandbox) => {
          expect(await until(async () => existsSync(ready), 10_000)).toBe(true);
          await sandbox.abort({ graceMs: 5000 });
        },
      },
    );
    expect(await run.log()).toContain('got-term');
    await run.dispose();
    await rm(ready, { force: true });
  });
});

describe('users', () => {
  it('per-task: a fresh user runs the task, owns its files, and is deleted with its home afterwards', async () => {
    const engine = await engineWith({ user: 'per-task' });
    const run = await runSandbox(engine, {
      command: [
        'sh',
        '-c',
        'echo data > made.txt; echo "user=$(id -un) uid=$(id -u) home=$HOME wd=$TASK_WORKDIR"',
      ],
    });
    const log = await run.log();
    const [, name, uid, home, wd] = /user=(\S+) uid=(\d+) home=(\S+) wd=(\S+)/.exec(log)!;
    expect(name).toMatch(/^tcw-task-[0-9a-f]{8}$/);
    expect(Number(uid)).not.toBe(0);
    expect(home).toBe(wd);
    expect(await userExists(name!)).toBe(true);
    expect((await stat(join(wd!, 'made.txt'))).uid).toBe(Number(uid));
    expect((await stat(wd!)).uid).toBe(Number(uid));
    await run.dispose();
    expect(await userExists(name!)).toBe(false);
    await expect(stat(wd!)).rejects.toThrow(/ENOENT/);
  });

  it('per-task: what the user left in /tmp, /var/tmp, /dev/shm and world-writable folders there goes with it', async () => {
    const tag = `tcw-leak-${process.pid}-${Date.now()}`;
    // a root-owned world-writable folder (like /tmp/.X11-unix), and a root file beside what the task makes
    const shared = join('/tmp', `${tag}-shared`);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(shared);
    await chmod(shared, 0o1777);
    await writeFile(join(shared, 'root-file'), 'keep');
    cleanups.push(() => rm(shared, { recursive: true, force: true }));
    const engine = await engineWith({ user: 'per-task' });
    const run = await runSandbox(engine, {
      command: [
        'sh',
        '-c',
        [
          `echo a > /tmp/${tag}-file`,
          `mkdir -p /tmp/${tag}-dir/deep && echo b > /tmp/${tag}-dir/deep/f && chmod 500 /tmp/${tag}-dir/deep`,
          `echo c > /var/tmp/${tag}`,
          `echo d > /dev/shm/${tag}`,
          `echo e > ${shared}/from-task`,
          `ln -s ${shared}/root-file /tmp/${tag}-link`,
          'echo uid=$(id -u)',
        ].join(' && '),
      ],
    });
    const log = await run.log();
    expect(log).toMatch(/uid=\d+/);
    for (const path of [`/tmp/${tag}-file`, `/var/tmp/${tag}`, `/dev/shm/${tag}`, `${shared}/from-task`]) {
      expect(existsSync(path)).toBe(true);
    }
    await run.dispose();
    for (const path of [
      `/tmp/${tag}-file`,
      `/tmp/${tag}-dir`,
      `/var/tmp/${tag}`,
      `/dev/shm/${tag}`,
      `${shared}/from-task`,
      `/tmp/${tag}-link`,
    ]) {
      expect(existsSync(path), path).toBe(false);
    }
    // others' files stay, including the one the task's symlink pointed at
    expect(await readFile(join(shared, 'root-file'), 'utf8')).toBe('keep');
  });

  it("per-task: the task cannot read the worker's 0600 config file", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tcw-native-secret-'));
    await chmod(dir, 0o755);
    const config = join(dir, 'worker.yml');
    await writeFile(config, 'accessToken: very-secret\n', { mode: 0o600 });
    try {
      const engine = await engineWith({ user: 'per-task' });
      const run = await runSandbox(engine, { command: ['cat', config] });
      const log = await run.log();
      expect(run.result.success).toBe(false);
      expect(log).toContain('Permission denied');
      expect(log).not.toContain('very-secret');
      await run.dispose();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a named user: the task runs as it, in a task dir it owns', async () => {
    const tasksDir = await mkdtemp(join(tmpdir(), 'tcw-native-named-'));
    await chmod(tasksDir, 0o755);
    try {
      const engine = await engineWith({ user: 'nobody', tasksDir });
      const run = await runSandbox(engine, { command: ['sh', '-c', 'id -un; touch mine; stat -c %U mine'] });
      expect(run.result.success).toBe(true);
      expect((await run.log()).split('\n').filter((l) => l === 'nobody')).toHaveLength(2);
      await run.dispose();
    } finally {
      await rm(tasksDir, { recursive: true, force: true });
    }
  });

  it('refuses a tasksDir a task user cannot reach, naming the key', async () => {
    const tasksDir = await mkdtemp(join(tmpdir(), 'tcw-native-closed-'));
    try {
      await expect(startEngine({ user: 'nobody', tasksDir })).rejects.toThrow(/engines\.native\.tasksDir/);
    } finally {
      await rm(tasksDir, { recursive: true, force: true });
    }
  });

  it('a new worker on the same work dir removes the task users a crashed one left behind', async () => {
    const workDir = await mkdtemp(join(tmpdir(), 'tcw-native-crash-'));
    const worker = { taskQueueId: 'tcw-test/native', workerGroup: 'g', workerId: 'w' };
    const crashed = createNativeEngine({ user: 'per-task' });
    await crashed.init!({ logger: silentLogger, worker, workDir });
    // a task was being prepared when the worker died: its user exists, nothing will dispose it
    await crashed.newSandboxBuilder({
      task: { taskId: 'crash', runId: 0, task: {} as never, worker, rootUrl: 'http://localhost' },
      payload: { command: ['true'] },
      log: { write() {}, info() {}, warn() {}, error() {}, addSecret() {} },
      signal: new AbortController().signal,
      logger: silentLogger,
      artifacts: {} as never,
    });
    const markers = await readdirSafe(join(workDir, 'native-state'));
    expect(markers).toHaveLength(1);
    const name = markers[0]!.replace(/^user:/, '');
    expect(await userExists(name)).toBe(true);
    const next = createNativeEngine({ user: 'per-task' });
    await next.init!({ logger: silentLogger, worker, workDir });
    expect(await userExists(name)).toBe(false);
    await expect(stat(join('/home', name))).rejects.toThrow(/ENOENT/);
    expect(await readdirSafe(join(workDir, 'native-state'))).toEqual([]);
    await crashed.dispose?.();
    await next.dispose?.();
    await rm(workDir, { recursive: true, force: true });
  });

  it('refuses to run tasks as root unless allowRoot is set', async () => {
    const engine = createNativeEngine({ user: 'current' });
    const workDir = await mkdtemp(join(tmpdir(), 'tcw-native-test-'));
    let error: unknown;
    await engine.init!({
      logger: (await import('@tcw/core')).silentLogger,
      worker: { taskQueueId: 'a/b', workerGroup: 'g', workerId: 'w' },
      workDir,
    }).catch((e) => {
      error = e;
    });
    await rm(workDir, { recursive: true, force: true });
    expect(TcwError.isInstance(error) && (error as TcwError).code).toBe(ConfigError.code);
    expect(String((error as Error).message)).toContain('engines.native.user');
  });
});

describe('payload and builder', () => {
  it('rejects a payload without a usable command, naming /command', async () => {
    const engine = await engineWith();
    for (const command of [[], 'echo hi', [[]], [['ok'], 'mixed']]) {
      await expect(runSandbox(engine, { command })).rejects.toThrow(/\/command/);
    }
  });

  it('writeFile puts a file in the task dir, owned by the task user, with its mode', async () => {
    const engine = await engineWith({ user: 'per-task' });
    const run = await runSandbox(
      engine,
      { command: ['sh', '-c', 'cat conf/a.txt; stat -c "%U %a" conf/a.txt'] },
      { configure: (b) => b.writeFile('conf/a.txt', 'from-the-worker\n', 0o600) },
    );
    const log = await run.log();
    expect(log).toContain('from-the-worker');
    expect(log).toMatch(/tcw-task-[0-9a-f]{8} 600/);
    await run.dispose();
  });

  it('writeFile refuses paths outside the task dir', async () => {
    const engine = await engineWith();
    await expect(
      runSandbox(engine, { command: ['true'] }, { configure: (b) => b.writeFile('../../etc/evil', 'x') }),
    ).rejects.toMatchObject({ code: 'ERR_MALFORMED_PAYLOAD' });
  });
});

describe('volumes', () => {
  it('per-task user: a writable cache is bind-mounted, writable by the task, and keeps what it wrote', async () => {
    const cache = await mkdtemp(join(tmpdir(), 'tcw-native-cache-'));
    await writeFile(join(cache, 'old.txt'), 'from-before');
    try {
      const engine = await engineWith({ user: 'per-task' });
      const run = await runSandbox(
        engine,
        { command: ['sh', '-c', 'cat caches/c1/old.txt && echo new > caches/c1/new.txt'] },
        { configure: (b) => b.attachVolume('caches/c1', { hostPath: cache, readOnly: false }) },
      );
      expect(run.result.success).toBe(true);
      expect(await run.log()).toContain('from-before');
      await run.dispose();
      // the task dir is gone, the cache is not
      expect(await readFile(join(cache, 'new.txt'), 'utf8')).toBe('new\n');
      expect(await readFile(join(cache, 'old.txt'), 'utf8')).toBe('from-before');
    } finally {
      await rm(cache, { recursive: true, force: true });
    }
  });

  it('a read-only volume cannot be written', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tcw-native-ro-'));
    await chmod(dir, 0o755);
    try {
      const engine = await engineWith({ user: 'current', allowRoot: true });
      const run = await runSandbox(
        engine,
        { command: ['sh', '-c', 'echo x > ro/new.txt'] },
        { configure: (b) => b.attachVolume('ro', { hostPath: dir, readOnly: true }) },
      );
      expect(run.result.success).toBe(false);
      expect(await run.log()).toContain('Read-only file system');
      await run.dispose();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses mount points outside the task dir', async () => {
    const engine = await engineWith();
    await expect(
      runSandbox(
        engine,
        { command: ['true'] },
        { configure: (b) => b.attachVolume('../x', { hostPath: tmpdir(), readOnly: true }) },
      ),
    ).rejects.toMatchObject({ code: 'ERR_MALFORMED_PAYLOAD' });
  });
});

describe('limits', () => {
  it('a task over its memory limit is failed, with a clear line in the log; the worker goes on', async () => {
    const engine = await engineWith({ limits: { memory: 64 * 1024 * 1024, pids: 64 } });
    const run = await runSandbox(engine, {
      command: [process.execPath, '-e', 'const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));'],
    });
    expect(run.result.success).toBe(false);
    expect(run.result.error).toBeUndefined();
    expect(await run.log()).toContain('it used more than its memory limit (67108864 bytes)');
    await run.dispose();
    const next = await runSandbox(engine, { command: ['echo', 'still-alive'] });
    expect(next.result.success).toBe(true);
    expect(await next.log()).toContain('still-alive');
    await next.dispose();
  });

  it('a pids limit stops a fork storm; the task ends, and nothing is left', async () => {
    const engine = await engineWith({ limits: { pids: 16 } });
    const mark = marker();
    const run = await runSandbox(
      engine,
      { command: ['sh', '-c', 'for i in $(seq 40); do sleep 3600 & done; wait'] },
      {
        configure: (b) => b.setEnv('TCW_MARK', mark),
        onStarted: async (sandbox) => {
          await until(async () => (await processesWith(mark)).length >= 15, 5000);
          expect((await processesWith(mark)).length).toBeLessThanOrEqual(16);
          await sandbox.abort({ graceMs: 0 });
        },
      },
    );
    expect(await run.log()).toMatch(/fork|Resource temporarily unavailable|Cannot/i);
    expect(await processesWith(mark)).toEqual([]);
    await run.dispose();
  });

  it('refuses limits it cannot apply (cgroups off), naming the config key', async () => {
    let error: unknown;
    await startEngine({ cgroups: 'off', limits: { memory: 64 * 1024 * 1024 } }).then(
      (s) => cleanups.push(s.cleanup),
      (e) => {
        error = e;
      },
    );
    expect((error as Error).message).toContain('engines.native.limits.memory');
  });
});
