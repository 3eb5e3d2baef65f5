import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Credentials, type EngineV1, type ResultSetV1, silentLogger, TaskLog } from '@tcw/core';
import { taskInfo } from './helpers.js';

export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** Debian's docker-registry, started for real on 127.0.0.1 with its storage in a temp folder. */
export interface LocalRegistry {
  host: string;
  stop(): Promise<void>;
}

/** A fixed test account (bcrypt hash of `tcw-test-password`, made with Python's crypt module). */
export const REGISTRY_USER = {
  username: 'tcw-test',
  password: 'tcw-test-password',
  htpasswd: 'tcw-test:$2b$12$aOP4n51HsxnIsqUqmUPAZuqxDE2kLmCNAV0HGEm7YBPOJX.7PLXYC\n',
};

export async function startRegistry(
  options: { storage?: string; auth?: boolean } = {},
): Promise<LocalRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'tcw-registry-'));
  const storage = options.storage ?? join(dir, 'data');
  const port = await freePort();
  const config = join(dir, 'config.yml');
  let auth = '';
  if (options.auth) {
    await writeFile(join(dir, 'htpasswd'), REGISTRY_USER.htpasswd);
    auth = `auth:\n  htpasswd:\n    realm: tcw-test\n    path: ${dir}/htpasswd\n`;
  }
  await writeFile(
    config,
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${storage}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${auth}`,
  );
  const child: ChildProcess = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: 'ignore' });
  const host = `127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const up = await fetch(`http://${host}/v2/`).then(
      (r) => r.ok || r.status === 401,
      () => false,
    );
    if (up) break;
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

export function docker(...args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/**
 * Builds a small image of its own (busybox plus /marker.txt) by `docker import`, so that loading or pulling it is
 * observable: it does not share its ID with the base test image.
 */
export async function buildMarkerImage(name: string, marker: string): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'tcw-marker-root-'));
  mkdirSync(join(root, 'bin'));
  copyFileSync('/bin/busybox', join(root, 'bin', 'busybox'));
  chmodSync(join(root, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'cat', 'echo', 'true']) symlinkSync('busybox', join(root, 'bin', applet));
  await writeFile(join(root, 'marker.txt'), marker);
  execFileSync('sh', ['-c', `tar -C "${root}" -c . | docker import --change 'ENV PATH=/bin' - "${name}"`], {
    stdio: 'ignore',
  });
  await rm(root, { recursive: true, force: true });
  return docker('image', 'inspect', '--format', '{{.Id}}', name);
}

/** `docker save` of an image into a file, optionally compressed with gzip or zstd. */
export function saveImage(name: string, file: string, compression: 'none' | 'gzip' | 'zstd'): void {
  const filter = compression === 'gzip' ? '| gzip -c' : compression === 'zstd' ? '| zstd -q -c' : '';
  execFileSync('sh', ['-c', `docker save "${name}" ${filter} > "${file}"`]);
}

/**
 * A stand-in for the queue's artifact endpoint only (`GET /api/queue/v1/task/<taskId>/artifacts/<name>` → 303 to the
 * blob), as a real local HTTP server: the fake queue of @tcw/testing has no HTTP interface for downloads.
 */
export interface ArtifactServer {
  rootUrl: string;
  /** Artifact requests seen, as `<taskId>/<name>` plus whether they carried a bewit (a signed URL). */
  requests: Array<{ artifact: string; signed: boolean }>;
  set(taskId: string, name: string, data: Buffer | { status: number; body: string }): void;
  close(): Promise<void>;
}

export async function startArtifactServer(): Promise<ArtifactServer> {
  const blobs = new Map<string, Buffer | { status: number; body: string }>();
  const requests: ArtifactServer['requests'] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const m = /^\/api\/queue\/v1\/task\/([^/]+)\/artifacts\/(.+)$/.exec(url.pathname);
    if (m) {
      const artifact = `${decodeURIComponent(m[1]!)}/${decodeURIComponent(m[2]!)}`;
      requests.push({ artifact, signed: url.searchParams.has('bewit') });
      const blob = blobs.get(artifact);
      if (!blob) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"code":"ResourceNotFound"}');
        return;
      }
      if (!Buffer.isBuffer(blob)) {
        res.writeHead(blob.status).end(blob.body);
        return;
      }
      res.writeHead(303, { location: `/blobs/${encodeURIComponent(artifact)}` }).end();
      return;
    }
    const b = /^\/blobs\/(.+)$/.exec(url.pathname);
    const blob = b ? blobs.get(decodeURIComponent(b[1]!)) : undefined;
    if (!blob || !Buffer.isBuffer(blob)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': blob.length }).end(blob);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    rootUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    set: (taskId, name, data) => blobs.set(`${taskId}/${name}`, data),
    close: () => new Promise((r) => server.close(() => r())),
  };
}

export interface DirectRun {
  result: ResultSetV1;
  log: string;
}

/** Drives the engine directly (no queue), for tests that need their own rootUrl, credentials and scopes. */
export async function runDirect(
  engine: EngineV1,
  payload: Record<string, unknown>,
  options: { rootUrl?: string; credentials?: Credentials; scopes?: string[]; taskId?: string } = {},
): Promise<DirectRun> {
  const dir = await mkdtemp(join(tmpdir(), 'tcw-docker-direct-'));
  const log = TaskLog.create(join(dir, 'log'));
  const readLog = async () => {
    const reader = log.createReader();
    await log.close();
    const chunks: Buffer[] = [];
    for await (const c of reader) chunks.push(c as Buffer);
    await rm(dir, { recursive: true, force: true });
    return Buffer.concat(chunks).toString('utf8');
  };
  try {
    const builder = await engine.newSandboxBuilder({
      task: taskInfo(
        options.taskId ?? `direct${Math.random().toString(36).slice(2, 10)}`,
        options.scopes,
        options.rootUrl,
      ),
      payload,
      log,
      signal: new AbortController().signal,
      logger: silentLogger,
      artifacts: undefined as never,
      ...(options.credentials ? { credentials: () => options.credentials! } : {}),
    });
    const sandbox = await builder.start();
    const result = await sandbox.wait();
    return { result, log: await readLog() };
  } catch (error) {
    const text = await readLog();
    throw Object.assign(error as Error, { log: text });
  }
}
