// Real child processes and signals: the process tree helper must end every process a command started.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import {
  pidNamespaceSupported,
  type SpawnTreeOptions,
  spawnTree,
  startTree,
  type TreeProcess,
} from '../src/process.js';
import { spawnerPid } from '../src/spawner/client.js';

async function processesWithArg(marker: string): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0');
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (cmd.includes(marker) && state !== 'Z') found.push(Number(name));
    } catch {
      // gone
    }
  }
  return found;
}

async function until(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

type Start = (argv: string[], options: SpawnTreeOptions) => Promise<TreeProcess>;
/** Every behaviour test runs both ways: through the spawner (`startTree`) and with a direct spawn (`spawnTree`). */
const MODES: Array<[string, Start]> = [
  ['through the spawner', startTree],
  ['spawned directly', async (argv, options) => spawnTree(argv, options)],
];

/** The parent pid of `pid`, from /proc. */
async function parentOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

describe.each(MODES)('spawnTree, %s', (mode, start) => {
  it('chooses a PID namespace where it can (root on Linux with unshare), a process group otherwise', async () => {
    const tree = await start(['true'], { cwd: tmpdir(), env });
    expect(tree.isolation).toBe(pidNamespaceSupported() ? 'pid-namespace' : 'process-group');
    tree.kill();
    // the command is a child of the spawner, or of this process
    if (mode === 'through the spawner') {
      expect(spawnerPid()).toBeDefined();
      expect(spawnerPid()).not.toBe(process.pid);
    }
  });

  it('passes stdin, stdout, stderr and the exit code', async () => {
    const tree = await start(['sh', '-c', 'read line; echo "out:$line"; echo err >&2; exit 7'], {
      cwd: tmpdir(),
      env,
      stdin: 'pipe',
    });
    tree.stdin!.end('hello\n');
    let out = '';
    let err = '';
    tree.stdout.on('data', (c) => (out += c));
    tree.stderr.on('data', (c) => (err += c));
    const closed = Promise.all([
      new Promise((r) => tree.stdout.once('close', r)),
      new Promise((r) => tree.stderr.once('close', r)),
    ]);
    const exit = await tree.exited;
    await closed; // 'exit' may come before the last output
    expect(exit.code).toBe(7);
    expect(out).toBe('out:hello\n');
    expect(err).toBe('err\n');
  });

  it('terminate() ends children, setsid grandchildren and double-forked daemons', async () => {
    const marker = `${3000 + Math.floor(Math.random() * 1000)}.5`;
    const script = [
      `sleep ${marker} &`,
      `setsid sleep ${marker} &`,
      `(setsid sh -c 'sleep ${marker} & exit 0' &)`,
      'echo started',
      `sleep ${marker}`,
    ].join('\n');
    const tree = await start(['sh', '-c', script], { cwd: tmpdir(), env });
    await new Promise<void>((resolve) => tree.stdout.once('data', () => resolve()));
    expect(await until(async () => (await processesWithArg(marker)).length >= 4, 5000)).toBe(true);
    const members = await tree.pids();
    expect(members.length).toBeGreaterThanOrEqual(tree.isolation === 'pid-namespace' ? 4 : 2);
    await tree.terminate(300);
    if (tree.isolation === 'pid-namespace') {
      expect(await until(async () => (await processesWithArg(marker)).length === 0, 3000)).toBe(true);
    } else {
      // a process group cannot catch processes that called setsid: only the group's members are gone
      for (const pid of members) {
        expect(await until(async () => !(await processesWithArg(marker)).includes(pid), 3000)).toBe(true);
      }
      for (const pid of await processesWithArg(marker)) process.kill(pid, 'SIGKILL');
    }
  });

  it('gives the polite signal first: a task that traps SIGTERM exits by itself', async () => {
    const tree = await start(
      ['sh', '-c', 'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 0.05; done'],
      {
        cwd: tmpdir(),
        env,
      },
    );
    let out = '';
    tree.stdout.on('data', (c) => (out += c));
    await until(async () => out.includes('ready'), 3000);
    const members = await tree.pids();
    expect(members.length).toBeGreaterThan(0);
    await tree.terminate(5000);
    expect(await until(async () => out.includes('got-term'), 2000)).toBe(true);
  });

  it('kills at once with a zero grace period', async () => {
    const marker = `${4000 + Math.floor(Math.random() * 1000)}.25`;
    const tree = await start(['sh', '-c', `trap "" TERM; sleep ${marker}`], { cwd: tmpdir(), env });
    expect(await until(async () => (await processesWithArg(marker)).length > 0, 3000)).toBe(true);
    await tree.terminate(0);
    expect(await until(async () => (await processesWithArg(marker)).length === 0, 3000)).toBe(true);
  });
});

describe.each(MODES)('spawnTree, start failures and stream ends, %s', (_mode, start) => {
  it('a command that cannot be started exits 127 (ENOENT: no such command, no such cwd)', async () => {
    const missing = await start(['/nonexistent/tcw-command'], {
      cwd: tmpdir(),
      env,
      isolation: 'process-group',
    });
    expect(await missing.exited).toEqual({ code: 127, signal: null });
    const badCwd = await start(['true'], { cwd: '/nonexistent/tcw-dir', env, isolation: 'process-group' });
    expect(await badCwd.exited).toEqual({ code: 127, signal: null });
    expect(await badCwd.pids()).toEqual([]);
  });

  it('rejects what spawn() refuses outright (no command, a NUL byte in an argument)', async () => {
    await expect(start([], { cwd: tmpdir(), env })).rejects.toThrow(/needs a command/);
    await expect(start(['echo', 'a\0b'], { cwd: tmpdir(), env })).rejects.toThrow(/null bytes/);
  });

  it('a command without output closes its streams after they are handed over, not before', async () => {
    // listeners attached as soon as the tree is there, as the engines do
    for (let i = 0; i < 30; i++) {
      const tree = await start(['true'], { cwd: tmpdir(), env, isolation: 'process-group' });
      const closed = Promise.all([
        new Promise((r) => tree.stdout.once('close', r)),
        new Promise((r) => tree.stderr.once('close', r)),
      ]);
      tree.stdout.resume();
      tree.stderr.resume();
      expect((await tree.exited).code).toBe(0);
      await closed;
    }
  });

  it('stdout ends only when the whole tree has closed it, not when the command exits', async () => {
    const tree = await start(['sh', '-c', '(sleep 0.4; echo late) & echo early'], {
      cwd: tmpdir(),
      env,
      isolation: 'process-group',
    });
    let out = '';
    tree.stdout.on('data', (c) => (out += c));
    const closed = new Promise<string>((r) => tree.stdout.once('close', () => r(out)));
    expect((await tree.exited).code).toBe(0);
    expect(out).not.toContain('late');
    expect(await closed).toBe('early\nlate\n');
  });
});

describe('the spawner', () => {
  it('is one process, reused for every command, and is the parent of each', async () => {
    const parents = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const tree = await startTree(['sleep', '5'], { cwd: tmpdir(), env, isolation: 'process-group' });
      parents.add(await parentOf(tree.pid));
      expect(spawnerPid()).toBe(await parentOf(tree.pid));
      tree.kill();
      await tree.exited;
    }
    expect(parents.size).toBe(1);
    expect(parents.has(process.pid)).toBe(false);
  });

  it('gives each of many concurrent commands its own stdin, stdout and stderr', async () => {
    const run = async (i: number) => {
      const tree = await startTree(
        ['sh', '-c', 'read line; echo "$line-$ID"; echo "err-$ID" >&2; exit $ID'],
        {
          cwd: tmpdir(),
          env: { ...env, ID: String(i) },
          stdin: 'pipe',
        },
      );
      let out = '';
      let err = '';
      tree.stdout.on('data', (c) => (out += c));
      tree.stderr.on('data', (c) => (err += c));
      const closed = Promise.all([
        new Promise((r) => tree.stdout.once('close', r)),
        new Promise((r) => tree.stderr.once('close', r)),
      ]);
      tree.stdin!.end(`in${i}\n`);
      const exit = await tree.exited;
      await closed;
      return { exit, out, err };
    };
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => run(i)));
    results.forEach((r, i) => {
      expect(r.exit).toEqual({ code: i, signal: null });
      expect(r.out).toBe(`in${i}-${i}\n`);
      expect(r.err).toBe(`err-${i}\n`);
    });
  });

  it('when it dies, its running commands are killed and resolve; the next command starts a new one', async () => {
    const marker = `${6000 + Math.floor(Math.random() * 1000)}.5`;
    const tree = await startTree(['sh', '-c', `sleep ${marker}; echo never`], { cwd: tmpdir(), env });
    expect(await until(async () => (await processesWithArg(marker)).length > 0, 3000)).toBe(true);
    const first = spawnerPid()!;
    process.kill(first, 'SIGKILL');
    expect(await tree.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(await until(async () => (await processesWithArg(marker)).length === 0, 3000)).toBe(true);

    const next = await startTree(['sh', '-c', 'echo again'], { cwd: tmpdir(), env });
    let out = '';
    next.stdout.on('data', (c) => (out += c));
    const closed = new Promise((r) => next.stdout.once('close', r));
    expect((await next.exited).code).toBe(0);
    await closed;
    expect(out).toBe('again\n');
    expect(spawnerPid()).toBeDefined();
    expect(spawnerPid()).not.toBe(first);
  });

  it('a stuck spawner: the command fails after 10 s, never runs unobserved, and a new spawner takes over', async () => {
    const warm = await startTree(['true'], { cwd: tmpdir(), env, isolation: 'process-group' });
    await warm.exited;
    const stuck = spawnerPid()!;
    const marker = `${7000 + Math.floor(Math.random() * 1000)}.5`;
    process.kill(stuck, 'SIGSTOP');
    try {
      await expect(
        startTree(['sleep', marker], { cwd: tmpdir(), env, isolation: 'process-group' }),
      ).rejects.toThrow(/did not hand over its pid within 10 s/);
    } finally {
      process.kill(stuck, 'SIGCONT');
    }
    // let go once idle, it exits; had it started the command late, the worker killed it
    expect(await until(async () => !existsSync(`/proc/${stuck}`), 5000)).toBe(true);
    expect(await until(async () => (await processesWithArg(marker)).length === 0, 3000)).toBe(true);
    const next = await startTree(['true'], { cwd: tmpdir(), env, isolation: 'process-group' });
    expect(await next.exited).toEqual({ code: 0, signal: null });
    expect(spawnerPid()).not.toBe(stuck);
  }, 30_000);

  it('closes a stdio connection that names no waiting request', async () => {
    const tree = await startTree(['true'], { cwd: tmpdir(), env, isolation: 'process-group' });
    await tree.exited;
    // the worker's socket path is the spawner's last argument
    const argv = (await readFile(`/proc/${spawnerPid()}/cmdline`, 'utf8')).split('\0').filter(Boolean);
    for (const header of ['ffffffff1\n', 'not a header at all\n']) {
      const socket = connect(argv.at(-1)!);
      socket.on('error', () => {});
      socket.write(header); // no end: the worker must close it
      socket.resume();
      await new Promise((r) => socket.once('close', r));
    }
  });

  it("connects the next command's stdio ahead, without keeping an idle process alive", async () => {
    // a real child process: it runs two commands through the spawner (the second one's stdio made while idle),
    // prints their output, and must then exit by itself
    const { spawn } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const { tsScriptArgs } = await import('./ts-script.js');
    // the built module (test runs after build): type stripping alone does not resolve the sources' .js imports
    const src = fileURLToPath(new URL('../dist/process.js', import.meta.url));
    const script = `import { startTree } from ${JSON.stringify(src)};
      for (const word of ['one', 'two']) {
        const tree = await startTree(['sh', '-c', 'read x; echo "$x ' + word + '"'], {
          cwd: '/', env: { PATH: '/usr/bin:/bin' }, stdin: 'pipe', isolation: 'process-group' });
        let out = '';
        tree.stdout.on('data', (c) => (out += c));
        const closed = new Promise((r) => tree.stdout.once('close', r));
        tree.stdin.end('got\\n');
        await tree.exited;
        await closed;
        process.stdout.write(out);
        await new Promise((r) => setTimeout(r, 100));
      }`;
    const child = spawn(process.execPath, tsScriptArgs(script), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const code = await new Promise((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve('still running after 10 s');
      }, 10_000);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(out).toBe('got one\ngot two\n');
  });

  it('is not used with TCW_SPAWNER=0: the command is a child of this process', async () => {
    process.env.TCW_SPAWNER = '0';
    try {
      const tree = await startTree(['sleep', '5'], { cwd: tmpdir(), env, isolation: 'process-group' });
      expect(await parentOf(tree.pid)).toBe(process.pid);
      tree.kill();
      await tree.exited;
    } finally {
      delete process.env.TCW_SPAWNER;
    }
  });
});

/** The worker's own cgroup v2 folder (pure v2 at /sys/fs/cgroup, or the hybrid /sys/fs/cgroup/unified). */
async function ownCgroupV2(): Promise<string> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  const line = mounts.split('\n').find((l) => l.split(' - ')[1]?.startsWith('cgroup2 '));
  if (!line) throw new Error('this test needs a cgroup v2 mount (Linux, root)');
  const mountPoint = line.split(' ')[4]!;
  const own = (await readFile('/proc/self/cgroup', 'utf8')).split('\n').find((l) => l.startsWith('0::'))!;
  return `${mountPoint}${own.slice(3)}`.replace(/\/$/, '');
}

describe.each(MODES)('spawnTree with cgroups (real cgroup v2 on this root CI host), %s', (_mode, start) => {
  it('catches setsid grandchildren and double-forked daemons; terminate() empties the cgroup', async () => {
    const base = await ownCgroupV2();
    const dir = `${base}/tcw-process-test-${process.pid}-${Date.now()}`;
    await mkdir(dir);
    try {
      const marker = `${5000 + Math.floor(Math.random() * 1000)}.5`;
      const script = [
        `setsid sleep ${marker} &`,
        `(setsid sh -c 'sleep ${marker} & exit 0' &)`,
        'echo started',
      ].join('\n');
      const tree = await start(['sh', '-c', script], { cwd: tmpdir(), env, cgroups: [dir] });
      expect(tree.isolation).toBe('cgroup');
      const exit = await tree.exited;
      expect(exit.code).toBe(0);
      // the command is gone; its setsid child and the daemon are still there, in the cgroup
      expect(await until(async () => (await processesWithArg(marker)).length >= 2, 5000)).toBe(true);
      const members = await tree.pids();
      for (const pid of await processesWithArg(marker)) expect(members).toContain(pid);
      await tree.terminate(300);
      expect(await processesWithArg(marker)).toEqual([]);
      expect(await tree.pids()).toEqual([]);
    } finally {
      await rmdir(dir);
    }
  });
});

describe.each(MODES)('spawnTree with cgroups, ended at once, %s', (_mode, start) => {
  it('terminate() right after the start ends the command even before it has joined its cgroup', async () => {
    const base = await ownCgroupV2();
    const dir = `${base}/tcw-process-test-${process.pid}-${Date.now()}-early`;
    await mkdir(dir);
    try {
      for (const grace of [0, 200]) {
        const tree = await start(['sleep', '3600'], { cwd: tmpdir(), env, cgroups: [dir] });
        const exit = await tree.terminate(grace);
        expect(exit.code).toBeNull();
        expect(await tree.pids()).toEqual([]);
      }
    } finally {
      await rmdir(dir);
    }
  });
});
