// Helpers for the docker end-to-end tests: the docker CLI (async, so polls do not block the event loop), small
// images built by `docker import` (nothing can be pulled from the internet), and Debian's docker-registry.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { QueueProc } from './helpers.js';

/** Built by scripts/build-test-images.sh (`docker import` of Debian's busybox-static). */
export const IMAGE = process.env.TCW_TEST_IMAGE ?? 'tcw-test/busybox:latest';

const run = promisify(execFile);

export async function docker(...args: string[]): Promise<string> {
  const { stdout } = await run('docker', args, { encoding: 'utf8' });
  return stdout.trim();
}

/** IDs of the containers (running or not) labelled with this task. */
export async function containersOfTask(taskId: string, status?: 'running'): Promise<string[]> {
  const filters = ['--filter', `label=tcw.task-id=${taskId}`];
  if (status) filters.push('--filter', `status=${status}`);
  const out = await docker('ps', '-aq', ...filters);
  return out ? out.split('\n') : [];
}

export function rand(): string {
  return Math.random().toString(36).slice(2, 10);
}

/**
 * Builds an image of its own by `docker import`: busybox with a few applets plus the given files, so that it does
 * not share its ID with the base test image (a load or pull of it is observable).
 */
export async function importImage(name: string, files: Record<string, string | Buffer>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'tcw-e2e-root-'));
  try {
    await mkdir(join(root, 'bin'));
    await copyFile('/bin/busybox', join(root, 'bin', 'busybox'));
    await chmod(join(root, 'bin', 'busybox'), 0o755);
    for (const applet of ['sh', 'cat', 'echo', 'true', 'sleep'])
      await symlink('busybox', join(root, 'bin', applet));
    for (const [path, content] of Object.entries(files)) await writeFile(join(root, path), content);
    execFileSync('sh', ['-c', `tar -C "${root}" -c . | docker import --change 'ENV PATH=/bin' - "${name}"`], {
      stdio: 'ignore',
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** `docker save NAME | gzip`, as bytes. */
export function saveGzip(name: string): Buffer {
  return execFileSync('sh', ['-c', `docker save "${name}" | gzip -c`], { maxBuffer: 256 * 1024 * 1024 });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

export interface LocalRegistry {
  host: string;
  stop(): Promise<void>;
}

/** Debian's docker-registry on 127.0.0.1 (an insecure registry dockerd accepts by default), storage in a temp dir. */
export async function startRegistry(): Promise<LocalRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'tcw-e2e-registry-'));
  const port = await freePort();
  const config = join(dir, 'config.yml');
  await writeFile(
    config,
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: 127.0.0.1:${port}\n`,
  );
  const child: ChildProcess = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: 'ignore' });
  const host = `127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const up = await fetch(`http://${host}/v2/`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (i > 100) throw new Error('docker-registry did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function dockerConfig(options: {
  queue: QueueProc;
  workDir: string;
  taskQueueId: string;
  workerId: string;
  docker?: Record<string, unknown>;
}): Record<string, unknown> {
  return {
    rootUrl: options.queue.rootUrl,
    credentials: options.queue.credentials,
    worker: {
      taskQueueId: options.taskQueueId,
      workerGroup: 'e2e-docker',
      workerId: options.workerId,
      capacity: 1,
      workDir: options.workDir,
      cancelPollInterval: 0.25,
      abortGracePeriod: 1,
    },
    engine: 'docker',
    engines: { docker: options.docker ?? {} },
    logging: { level: 'debug', pretty: false },
  };
}

/** An artifact's bytes, through taskcluster.downloadArtifact. */
export async function downloadBytes(
  queue: QueueProc['queue'],
  taskId: string,
  name: string,
): Promise<Buffer> {
  const { PassThrough } = await import('node:stream');
  const { default: taskcluster } = await import('taskcluster-client');
  const chunks: Buffer[] = [];
  await taskcluster.downloadArtifact({
    taskId,
    name,
    queue,
    streamFactory: () => {
      chunks.length = 0;
      const pass = new PassThrough();
      pass.on('data', (c: Buffer) => chunks.push(c));
      return pass;
    },
  });
  return Buffer.concat(chunks);
}
