// Helpers of the plugin end-to-end tests (e2e-plugins*.test.ts).
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import taskcluster from 'taskcluster-client';
import type { QueueProc } from './helpers.js';

/** Downloads an artifact with taskcluster.downloadArtifact into a Buffer. */
export async function downloadBuffer(
  queue: QueueProc['queue'],
  taskId: string,
  name: string,
  runId?: number,
): Promise<Buffer> {
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
  return Buffer.concat(chunks);
}

/** The sha256 of an artifact, downloaded with taskcluster.downloadArtifact without holding it in memory. */
export async function downloadSha256(
  queue: QueueProc['queue'],
  taskId: string,
  name: string,
): Promise<string> {
  let hash = createHash('sha256');
  await taskcluster.downloadArtifact({
    taskId,
    name,
    queue,
    streamFactory: () => {
      hash = createHash('sha256');
      const pass = new PassThrough();
      pass.on('data', (c: Buffer) => hash.update(c));
      pass.resume();
      return pass;
    },
  });
  return hash.digest('hex');
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A config for a native-engine worker that runs tasks as the worker's (root) user. */
export function nativeConfig(options: {
  queue: QueueProc;
  workDir: string;
  taskQueueId: string;
  workerGroup?: string;
  workerId?: string;
  plugins?: Record<string, unknown>;
}): Record<string, unknown> {
  return {
    rootUrl: options.queue.rootUrl,
    credentials: options.queue.credentials,
    worker: {
      taskQueueId: options.taskQueueId,
      workerGroup: options.workerGroup ?? 'e2e-native',
      workerId: options.workerId ?? 'w-native',
      capacity: 2,
      workDir: options.workDir,
      cancelPollInterval: 0.25,
      abortGracePeriod: 1,
    },
    engine: 'native',
    engines: {
      native: {
        user: 'current',
        allowRoot: true,
        killGracePeriod: 1,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      },
    },
    plugins: { disabled: [], ...options.plugins },
    logging: { level: 'debug', pretty: false },
  };
}

/** `NAME=value` lines of an `env` dump in a log, as a record. */
export function envOf(log: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of log.matchAll(/^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/gm)) out[m[1]!] = m[2]!;
  return out;
}

export interface FaultyProxy {
  url: string;
  /** Object-data PUTs answered 503 by the proxy, and those passed to the queue. */
  refusedPuts: string[];
  passedPuts: string[];
  /** The Content-Encoding of every object-data PUT, by path (`identity` when none). */
  putEncodings: Array<{ path: string; encoding: string }>;
  close(): Promise<void>;
}

/**
 * An HTTP proxy in front of the local queue, for the worker only: it forwards everything (Host header kept, so
 * Hawk signatures still match), rewrites the queue's own address to its own in JSON responses (so the object
 * service's upload URLs come through it too), and answers the first `failPuts` data PUTs of each object whose
 * URL path matches `only` with 503.
 */
export async function startFaultyProxy(target: string, failPuts: number, only: RegExp): Promise<FaultyProxy> {
  const { createServer, request } = await import('node:http');
  const upstream = new URL(target);
  const refusedPuts: string[] = [];
  const passedPuts: string[] = [];
  const putEncodings: FaultyProxy['putEncodings'] = [];
  const seen = new Map<string, number>();
  let self = '';
  const server = createServer((req, res) => {
    const path = req.url ?? '/';
    if (req.method === 'PUT' && path.startsWith('/__objects/put/')) {
      const object = path.split('?')[0]!;
      putEncodings.push({ path: object, encoding: String(req.headers['content-encoding'] ?? 'identity') });
      const n = (seen.get(object) ?? 0) + 1;
      seen.set(object, n);
      if (n <= failPuts && only.test(object)) {
        refusedPuts.push(object);
        req.resume();
        req.on('end', () => {
          res.writeHead(503, { 'content-type': 'text/plain' });
          res.end('object store unavailable (test proxy)');
        });
        return;
      }
      passedPuts.push(object);
    }
    const out = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path, headers: req.headers },
      (up) => {
        const type = String(up.headers['content-type'] ?? '');
        if (!type.includes('json') || up.headers['content-encoding']) {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        up.on('data', (c: Buffer) => chunks.push(c));
        up.on('end', () => {
          const body = Buffer.from(Buffer.concat(chunks).toString('utf8').replaceAll(upstream.origin, self));
          const headers = { ...up.headers, 'content-length': String(body.length) };
          res.writeHead(up.statusCode ?? 502, headers);
          res.end(body);
        });
      },
    );
    out.on('error', (e) => {
      res.writeHead(502);
      res.end(String(e));
    });
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  self = `http://127.0.0.1:${address.port}`;
  return {
    url: self,
    refusedPuts,
    passedPuts,
    putEncodings,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A process's resident set size now and at its peak (VmRSS, VmHWM), in bytes. */
export async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}
