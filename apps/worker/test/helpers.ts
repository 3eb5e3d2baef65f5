// Real processes: `tcw queue` and `tcw start` run as child processes; tasks go through taskcluster-client.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import taskcluster from 'taskcluster-client';
import { stringify } from 'yaml';

/** The task log every run uploads, on every path. */
export const BACKING_LOG = 'public/logs/live_backing.log';

export const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
export const FIXTURE = fileURLToPath(new URL('./fixtures/task-script.mjs', import.meta.url));

/** Default plugins disabled in these tests (none: the tests run the default set). */
export const DISABLED_DEFAULTS: string[] = [];

export interface Proc {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
  waitFor(pattern: RegExp, stream?: 'stdout' | 'stderr', ms?: number): Promise<RegExpMatchArray>;
  kill(signal?: NodeJS.Signals): void;
}

export function tcw(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Proc {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, TCW_LOG_LEVEL: 'debug', ...options.env },
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (err += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    async waitFor(pattern, stream = 'stderr', ms = 20_000) {
      const end = Date.now() + ms;
      for (;;) {
        const m = (stream === 'stdout' ? out : err).match(pattern);
        if (m) return m;
        if (Date.now() > end || child.exitCode !== null) {
          throw new Error(`timed out waiting for ${pattern} on ${stream}\nstdout:\n${out}\nstderr:\n${err}`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    kill(signal = 'SIGTERM') {
      child.kill(signal);
    },
  };
}

/** Parses `export NAME='value'` and `export NAME=value` lines. */
export function parseExports(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/^export (\w+)=(?:'((?:[^']|'\\'')*)'|([^\s']*))$/gm)) {
    out[m[1]!] = m[2] === undefined ? m[3]! : m[2].replaceAll("'\\''", "'");
  }
  return out;
}

export interface QueueProc extends Proc {
  rootUrl: string;
  credentials: { clientId: string; accessToken: string };
  queue: InstanceType<typeof taskcluster.Queue>;
  env: Record<string, string>;
}

export async function startQueue(stateDir: string, extraArgs: string[] = []): Promise<QueueProc> {
  const proc = tcw(['queue', '--port', '0', '--state-dir', stateDir, ...extraArgs]);
  await proc.waitFor(/TASKCLUSTER_ACCESS_TOKEN=.*\n/, 'stdout');
  const env = parseExports(proc.stdout());
  const credentials = { clientId: env.TASKCLUSTER_CLIENT_ID!, accessToken: env.TASKCLUSTER_ACCESS_TOKEN! };
  return {
    ...proc,
    env,
    rootUrl: env.TASKCLUSTER_ROOT_URL!,
    credentials,
    queue: new taskcluster.Queue({ rootUrl: env.TASKCLUSTER_ROOT_URL!, credentials }),
  };
}

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function writeConfig(dir: string, config: Record<string, unknown>): Promise<string> {
  const path = join(dir, 'worker.yml');
  await writeFile(path, stringify(config));
  return path;
}

export function scriptConfig(options: {
  queue?: QueueProc;
  markerDir: string;
  workDir: string;
  capacity?: number;
  taskQueueId?: string;
  extra?: Record<string, unknown>;
}): Record<string, unknown> {
  return {
    ...(options.queue ? { rootUrl: options.queue.rootUrl, credentials: options.queue.credentials } : {}),
    worker: {
      taskQueueId: options.taskQueueId ?? 'tcw-e2e/script',
      workerGroup: 'e2e',
      workerId: 'w1',
      capacity: options.capacity ?? 1,
      workDir: options.workDir,
      cancelPollInterval: 0.25,
      abortGracePeriod: 1,
    },
    engine: 'script',
    engines: {
      script: {
        command: [process.execPath, FIXTURE],
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', MARKER_DIR: options.markerDir },
        schema: {
          type: 'object',
          properties: {
            exitCode: { type: 'integer' },
            stdout: { type: 'string' },
            stderr: { type: 'string' },
            sleepMs: { type: 'integer' },
            tree: { type: 'string', pattern: '^[0-9.]+$' },
            files: { type: 'object', additionalProperties: { type: 'string' } },
          },
        },
      },
    },
    plugins: { disabled: DISABLED_DEFAULTS },
    logging: { level: 'debug', pretty: false },
    ...options.extra,
  };
}

export function taskDefinition(
  taskQueueId: string,
  payload: Record<string, unknown>,
  extra: Record<string, unknown> = {},
) {
  return {
    taskQueueId,
    created: new Date().toJSON(),
    deadline: taskcluster.fromNowJSON('1 hour'),
    payload,
    metadata: {
      name: 'e2e',
      description: 'tcw e2e test',
      owner: 'tcw@example.com',
      source: 'https://example.com/tcw',
    },
    ...extra,
  };
}

export async function waitForResolution(
  queue: InstanceType<typeof taskcluster.Queue>,
  taskId: string,
  ms = 30_000,
): Promise<{
  state: string;
  reasonResolved?: string;
  runs: Array<{ state: string; reasonResolved?: string }>;
}> {
  const end = Date.now() + ms;
  for (;;) {
    const { status } = await queue.status(taskId);
    const last = status.runs[status.runs.length - 1];
    if (last && !['pending', 'running'].includes(last.state)) {
      return { state: last.state, reasonResolved: last.reasonResolved, runs: status.runs };
    }
    if (Date.now() > end) throw new Error(`task ${taskId} did not resolve: ${JSON.stringify(status)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function downloadText(
  queue: InstanceType<typeof taskcluster.Queue>,
  taskId: string,
  name: string,
  runId?: number,
): Promise<string> {
  const { PassThrough } = await import('node:stream');
  const chunks: Buffer[] = [];
  await taskcluster.downloadArtifact({
    taskId,
    ...(runId === undefined ? {} : { runId }),
    name,
    queue,
    streamFactory: () => {
      chunks.length = 0;
      const pass = new PassThrough();
      pass.on('data', (c: Buffer) => chunks.push(c));
      return pass;
    },
  });
  return Buffer.concat(chunks).toString('utf8');
}

/** PIDs of live processes whose command line has `marker` as an argument. */
export async function processesWith(marker: string): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0');
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      if (cmd.includes(marker) && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z') found.push(Number(name));
    } catch {
      // gone
    }
  }
  return found;
}

export async function until<T>(
  check: () => Promise<T | undefined | false>,
  ms: number,
  what: string,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Stops what a test started, in order (SIGTERM to each one still running, then waits for it to exit). */
export async function stopAll(...procs: Array<Proc | undefined>): Promise<void> {
  for (const proc of procs) {
    if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) continue;
    proc.kill('SIGTERM');
    await proc.exited;
  }
}

export async function cleanup(...dirs: string[]): Promise<void> {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
}

/** Creates a task for `taskQueueId` through the real client; returns its taskId. */
export async function createTaskIn(
  queue: QueueProc,
  taskQueueId: string,
  payload: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const taskId = taskcluster.slugid();
  await queue.queue.createTask(taskId, taskDefinition(taskQueueId, payload, extra));
  return taskId;
}
