import { createHash, randomBytes } from 'node:crypto';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type CreateArtifactRequest, type Credentials, createAjv, type EngineV1 } from '@tcw/core';
import { createMockEngine, FakeQueue, runPluginTask, startTestWorker } from '@tcw/testing';
import { describe, expect, it } from 'vitest';
import provider, { artifacts } from '../src/index.js';
import { onStarted, recordingLogger, symlinker } from './helpers.js';

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

describe('artifacts plugin: payload schema', () => {
  it('accepts generic-worker shaped entries and rejects unknown fields, naming the JSON pointer', async () => {
    const result = await runPluginTask({
      plugins: [artifacts()],
      payload: {
        mock: {},
        artifacts: [{ type: 'file', path: 'a.txt', name: 'public/a.txt', colour: 'red' }],
      },
    });
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('/artifacts/0');
    expect(result.log).toContain('colour');
  });

  it('rejects a bad type, a bad name and a bad expires', async () => {
    const result = await runPluginTask({
      plugins: [artifacts()],
      payload: {
        mock: {},
        artifacts: [
          { type: 'symlink', path: 'a', name: 'x' },
          { type: 'file', path: 'a', name: '/leading-slash' },
          { type: 'file', path: 'a', name: 'ok', expires: 'tomorrow' },
        ],
      },
    });
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('/artifacts/0/type');
    expect(result.log).toContain('/artifacts/1/name');
    expect(result.log).toContain('/artifacts/2/expires');
  });

  it('has no `artifacts` key on an engine that cannot extract files', async () => {
    const result = await runPluginTask({
      engine: createMockEngine({ capabilities: { extract: false } }),
      plugins: [artifacts()],
      payload: { mock: {}, artifacts: [{ type: 'file', path: 'a.txt', name: 'public/a.txt' }] },
    });
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('artifacts');
  });

  it('refuses an expires before the task deadline, and a nameless entry for the task directory itself', async () => {
    const result = await runPluginTask({
      plugins: [artifacts()],
      payload: {
        mock: {},
        artifacts: [
          {
            type: 'file',
            path: 'a.txt',
            name: 'public/a.txt',
            expires: new Date(Date.now() - 60_000).toJSON(),
          },
          { type: 'directory', path: '.' },
        ],
      },
    });
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('/artifacts/0/expires');
    expect(result.log).toContain("is before the task's deadline");
    expect(result.log).toContain('/artifacts/1/name');
  });

  it('refuses two entries with the same name', async () => {
    const result = await runPluginTask({
      plugins: [artifacts()],
      payload: {
        mock: { files: { 'a.txt': 'a' } },
        artifacts: [
          { type: 'file', path: 'a.txt', name: 'public/a.txt' },
          { type: 'file', path: './a.txt', name: 'public/a.txt' },
        ],
      },
    });
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('/artifacts/1/name');
  });

  it('refuses the names of the task log, explicit or through a folder', async () => {
    const explicit = await runPluginTask({
      plugins: [artifacts()],
      payload: {
        mock: { files: { 'a.txt': 'a' } },
        artifacts: [{ type: 'file', path: 'a.txt', name: 'public/logs/live_backing.log' }],
      },
    });
    expect(explicit.resolution).toBe('exception/malformed-payload');
    expect(explicit.log).toContain('/artifacts/0/name');
    const viaFolder = await runPluginTask({
      plugins: [artifacts()],
      payload: {
        mock: { files: { 'logs/live.log': 'fake', 'logs/other.txt': 'other' } },
        artifacts: [{ type: 'directory', path: 'logs', name: 'public/logs' }],
      },
    });
    expect(viaFolder.resolution).toBe('failed');
    expect(viaFolder.log).toContain('public/logs/live.log: the name is reserved');
    expect(viaFolder.artifacts.get('public/logs/other.txt')?.data?.toString()).toBe('other');
    expect(viaFolder.artifacts.get('public/logs/live.log')).toBeUndefined();
  });

  it('validates its config: the provider schema refuses unknown keys and the factory a bad concurrency', () => {
    const ajv = createAjv();
    const validate = ajv.compile(provider.configSchema);
    expect(validate({ uploadConcurrency: 3 })).toBe(true);
    expect(validate({ uploadConcurency: 3 })).toBe(false);
    expect(validate({ uploadConcurrency: 0 })).toBe(false);
    expect(() => artifacts({ uploadConcurrency: 0 })).toThrow(/uploadConcurrency/);
    expect(provider.name).toBe('artifacts');
  });
});

describe('artifacts plugin: uploads', () => {
  it('uploads files and folders as object artifacts, with types from extensions and gzip for text', async () => {
    const text = 'line of text\n'.repeat(1000);
    const result = await runPluginTask({
      plugins: [artifacts()],
      payload: {
        mock: {
          files: {
            'build/report.txt': text,
            'build/data.bin': 'binary-ish',
            'out/index.html': '<p>hi</p>',
            'out/sub/result.json': '{"ok":true}',
            'custom.dat': 'x',
          },
        },
        artifacts: [
          { type: 'file', path: 'build/report.txt', name: 'public/report.txt' },
          { type: 'file', path: 'build/data.bin', name: 'public/data.bin' },
          { type: 'directory', path: 'out', name: 'public/out' },
          { type: 'file', path: 'custom.dat', name: 'public/custom.dat', contentType: 'text/x-custom' },
        ],
      },
    });
    expect(result.resolution).toBe('completed');
    const report = result.artifacts.get('public/report.txt');
    expect(report).toMatchObject({
      storageType: 'object',
      contentType: 'text/plain; charset=utf-8',
      contentEncoding: 'gzip',
      present: true,
    });
    expect(report?.data?.toString()).toBe(text);
    expect(report?.hashes?.sha256).toBe(sha256(text));
    expect(result.artifacts.get('public/data.bin')).toMatchObject({
      contentType: 'application/octet-stream',
    });
    expect(result.artifacts.get('public/out/index.html')?.data?.toString()).toBe('<p>hi</p>');
    expect(result.artifacts.get('public/out/index.html')?.contentType).toBe('text/html; charset=utf-8');
    expect(result.artifacts.get('public/out/sub/result.json')?.data?.toString()).toBe('{"ok":true}');
    expect(result.artifacts.get('public/custom.dat')?.contentType).toBe('text/x-custom');
    expect(result.log).toContain('Uploaded artifact public/report.txt');
    expect(result.hooks.filter((h) => h.plugin === 'artifacts').map((h) => h.hook)).toEqual([
      'taskPlugin',
      'prepare',
      'buildSandbox',
      'started',
      'stopped',
      'finished',
      'dispose',
    ]);
  });

  it('names an artifact after its path when `name` is absent, and honours contentEncoding', async () => {
    const text = 'compressible '.repeat(1000);
    const result = await runPluginTask({
      plugins: [artifacts()],
      payload: {
        mock: { files: { 'logs/a.txt': text } },
        artifacts: [{ type: 'file', path: './logs/a.txt', contentEncoding: 'identity' }],
      },
    });
    expect(result.resolution).toBe('completed');
    expect(result.artifacts.get('logs/a.txt')).toMatchObject({ contentEncoding: 'identity' });
    expect(result.artifacts.get('logs/a.txt')?.data?.toString()).toBe(text);
  });

  it("defaults `expires` to the task's expiry and caps it there", async () => {
    const taskExpires = new Date(Date.now() + 48 * 3600_000);
    const sooner = new Date(Date.now() + 2 * 3600_000).toJSON();
    const later = new Date(Date.now() + 100 * 24 * 3600_000).toJSON();
    const result = await runPluginTask({
      plugins: [artifacts()],
      task: { expires: taskExpires.toJSON() },
      payload: {
        mock: { files: { 'a.txt': 'a', 'b.txt': 'b', 'c.txt': 'c' } },
        artifacts: [
          { type: 'file', path: 'a.txt', name: 'public/a.txt' },
          { type: 'file', path: 'b.txt', name: 'public/b.txt', expires: sooner },
          { type: 'file', path: 'c.txt', name: 'public/c.txt', expires: later },
        ],
      },
    });
    expect(result.resolution).toBe('completed');
    expect(result.artifacts.get('public/a.txt')?.expires).toBe(taskExpires.toJSON());
    expect(result.artifacts.get('public/b.txt')?.expires).toBe(sooner);
    expect(result.artifacts.get('public/c.txt')?.expires).toBe(taskExpires.toJSON());
  });

  it('turns a missing file into a file-missing-on-worker error artifact and a failed task', async () => {
    const result = await runPluginTask({
      plugins: [artifacts()],
      payload: {
        mock: { files: { 'here.txt': 'here' } },
        artifacts: [
          { type: 'file', path: 'gone.txt', name: 'public/gone.txt' },
          { type: 'directory', path: 'nodir', name: 'public/nodir' },
          { type: 'file', path: 'here.txt', name: 'public/here.txt' },
        ],
      },
    });
    expect(result.resolution).toBe('failed');
    expect(result.artifacts.get('public/gone.txt')).toMatchObject({
      storageType: 'error',
      reason: 'file-missing-on-worker',
    });
    expect(result.artifacts.get('public/nodir')).toMatchObject({
      storageType: 'error',
      reason: 'file-missing-on-worker',
    });
    expect(result.artifacts.get('public/here.txt')?.data?.toString()).toBe('here');
    expect(result.log).toContain('Artifact public/gone.txt: file "gone.txt" was not found');
  });

  it('does not fail the task for a missing optional artifact', async () => {
    const result = await runPluginTask({
      plugins: [artifacts()],
      payload: {
        mock: {},
        artifacts: [{ type: 'file', path: 'gone.txt', name: 'public/gone.txt', optional: true }],
      },
    });
    expect(result.resolution).toBe('completed');
    expect(result.artifacts.get('public/gone.txt')).toMatchObject({
      storageType: 'error',
      reason: 'file-missing-on-worker',
    });
  });

  it('fails the task when a file entry names a folder, or a directory entry names a file', async () => {
    const result = await runPluginTask({
      plugins: [artifacts()],
      payload: {
        mock: { files: { 'd/x.txt': 'x', 'f.txt': 'f' } },
        artifacts: [
          { type: 'file', path: 'd', name: 'public/d' },
          { type: 'directory', path: 'f.txt', name: 'public/f' },
        ],
      },
    });
    expect(result.resolution).toBe('failed');
    expect(result.artifacts.get('public/d')).toMatchObject({ reason: 'invalid-resource-on-worker' });
    expect(result.artifacts.get('public/f')).toMatchObject({ reason: 'invalid-resource-on-worker' });
  });

  it('uploads artifacts when the task failed', async () => {
    const result = await runPluginTask({
      plugins: [artifacts()],
      payload: {
        mock: { files: { 'crash.log': 'boom' }, exitCode: 3 },
        artifacts: [{ type: 'file', path: 'crash.log', name: 'public/crash.log' }],
      },
    });
    expect(result.resolution).toBe('failed');
    expect(result.artifacts.get('public/crash.log')?.data?.toString()).toBe('boom');
  });

  it('uploads artifacts when the task was ended by its max run time (control.fail)', async () => {
    const maxRunTime = onStarted((ctx) => {
      setTimeout(() => void ctx.control.fail('max run time exceeded (test)', { graceMs: 0 }), 50);
    });
    const result = await runPluginTask({
      plugins: [maxRunTime, artifacts()],
      payload: {
        mock: { files: { 'partial.txt': 'partial' }, delayMs: 60_000 },
        artifacts: [{ type: 'file', path: 'partial.txt', name: 'public/partial.txt' }],
      },
    });
    expect(result.resolution).toBe('failed');
    expect(result.log).toContain('max run time exceeded (test)');
    expect(result.artifacts.get('public/partial.txt')?.data?.toString()).toBe('partial');
  });

  it('uploads nothing for a cancelled task', async () => {
    let startedTask: (() => void) | undefined;
    const started = new Promise<void>((resolve) => {
      startedTask = resolve;
    });
    const tw = await startTestWorker({
      plugins: [onStarted(() => startedTask?.()), artifacts()],
    });
    try {
      const taskId = tw.submit({
        mock: { files: { 'a.txt': 'a' }, delayMs: 60_000 },
        artifacts: [{ type: 'file', path: 'a.txt', name: 'public/a.txt' }],
      });
      await started;
      tw.queue.cancelTask(taskId);
      await tw.stop();
      const names = [...tw.queue.artifacts(taskId, 0).keys()];
      expect(names).not.toContain('public/a.txt');
      expect(
        tw.queue.calls.filter((c) => c.method === 'createArtifact' && c.args[2] === 'public/a.txt'),
      ).toEqual([]);
    } finally {
      if (!tw.worker.stopping) await tw.stop('now');
    }
  });

  it('works with engines that hand out streams only (spooled uploads)', async () => {
    const inner = createMockEngine();
    const streamsOnly: EngineV1 = {
      ...inner,
      async newSandboxBuilder(options) {
        const builder = await inner.newSandboxBuilder(options);
        return {
          ...builder,
          async start() {
            const sandbox = await builder.start();
            return {
              ...sandbox,
              async wait() {
                const result = await sandbox.wait();
                const { extractFile, extractFolder } = result;
                return {
                  ...result,
                  dispose: () => result.dispose(),
                  extractFile: async (path: string) => {
                    const { stream } = await extractFile!(path);
                    return { stream };
                  },
                  extractFolder: (path, handler) =>
                    extractFolder!(path, (rel, file) =>
                      handler(rel, 'refused' in file ? file : { stream: file.stream }),
                    ),
                };
              },
            };
          },
        };
      },
    };
    const data = randomBytes(100_000).toString('base64');
    const result = await runPluginTask({
      engine: streamsOnly,
      plugins: [artifacts()],
      payload: {
        mock: { files: { 'dir/one.txt': 'one '.repeat(300), 'two.bin': data } },
        artifacts: [
          { type: 'directory', path: 'dir', name: 'public/dir' },
          { type: 'file', path: 'two.bin', name: 'public/two.bin' },
        ],
      },
    });
    expect(result.resolution).toBe('completed');
    expect(result.artifacts.get('public/dir/one.txt')?.data?.toString()).toBe('one '.repeat(300));
    expect(result.artifacts.get('public/two.bin')?.data?.toString()).toBe(data);
  });
});

describe('artifacts plugin: paths that leave the task directory', () => {
  it('refuses `..` before the task runs, naming the JSON pointer', async () => {
    const engine = createMockEngine();
    const result = await runPluginTask({
      engine,
      plugins: [artifacts()],
      payload: {
        mock: {},
        artifacts: [
          { type: 'file', path: 'ok.txt', name: 'public/ok.txt' },
          { type: 'file', path: 'a/../../etc/passwd', name: 'public/passwd' },
        ],
      },
    });
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('/artifacts/1/path');
    expect(result.log).toContain('leaves the task directory');
    expect(engine.sandboxes).toHaveLength(0);
  });

  it('refuses an absolute path outside the sandbox, naming the JSON pointer', async () => {
    const result = await runPluginTask({
      plugins: [artifacts()],
      payload: { mock: {}, artifacts: [{ type: 'file', path: '/etc/passwd', name: 'public/passwd' }] },
    });
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('/artifacts/0/path');
    expect(result.artifacts.get('public/passwd')?.storageType).not.toBe('object');
  });

  it('refuses a symlink that leaves the task directory, and still uploads the other artifacts', async () => {
    const engine = createMockEngine();
    const result = await runPluginTask({
      engine,
      plugins: [symlinker(engine, { 'passwd.txt': '/etc/passwd', outdir: '/etc' }), artifacts()],
      payload: {
        mock: { files: { 'fine.txt': 'fine' } },
        artifacts: [
          { type: 'file', path: 'passwd.txt', name: 'public/passwd.txt' },
          { type: 'directory', path: 'outdir', name: 'public/etc' },
          { type: 'file', path: 'fine.txt', name: 'public/fine.txt' },
        ],
      },
    });
    expect(result.resolution).toBe('exception/malformed-payload');
    expect(result.log).toContain('/artifacts/0/path');
    expect(result.log).toContain('/artifacts/1/path');
    expect(result.artifacts.get('public/passwd.txt')).toMatchObject({
      storageType: 'error',
      reason: 'invalid-resource-on-worker',
    });
    expect([...result.artifacts.keys()].filter((n) => n.startsWith('public/etc/'))).toEqual([]);
    expect(result.artifacts.get('public/fine.txt')?.data?.toString()).toBe('fine');
  });

  it('turns a symlink inside a folder that leaves it into an invalid-resource-on-worker error artifact', async () => {
    const engine = createMockEngine();
    const result = await runPluginTask({
      engine,
      plugins: [symlinker(engine, { 'out/escape': '/etc/passwd', 'out/inside': '../top.txt' }), artifacts()],
      payload: {
        mock: { files: { 'out/real.txt': 'real', 'top.txt': 'top' } },
        artifacts: [{ type: 'directory', path: 'out', name: 'public/out' }],
      },
    });
    expect(result.resolution).toBe('completed');
    expect(result.artifacts.get('public/out/escape')).toMatchObject({
      storageType: 'error',
      reason: 'invalid-resource-on-worker',
    });
    expect(result.artifacts.get('public/out/real.txt')?.data?.toString()).toBe('real');
    expect(result.artifacts.get('public/out/inside')?.data?.toString()).toBe('top');
  });
});

describe('artifacts plugin: transfer', () => {
  it('retries PUTs that get a 5xx and the artifact arrives intact (sha256 matches)', async () => {
    // FakeQueue's object store answers data PUTs over real loopback HTTP; failNext('put') makes it answer 503.
    // (@tcw/local-queue is not on this branch.)
    const queue = new FakeQueue({ longPollMs: 20 });
    queue.failNext('put', 503, 2);
    const records: Array<{ level: string; fields: object; message?: string }> = [];
    // the mock engine writes files from strings: random bytes as base64 text, in a .bin file (no gzip)
    const data = randomBytes(300_000).toString('base64');
    const tw = await startTestWorker({ queue, plugins: [artifacts()], logger: recordingLogger(records) });
    try {
      const result = await tw.run({
        mock: { files: { 'blob.bin': data } },
        artifacts: [{ type: 'file', path: 'blob.bin', name: 'public/blob.bin' }],
      });
      expect(result.resolution).toBe('completed');
      const artifact = result.artifacts.get('public/blob.bin');
      const sent = Buffer.from(data);
      expect(artifact?.data?.length).toBe(sent.length);
      expect(sha256(artifact!.data!)).toBe(sha256(sent));
      expect(artifact?.hashes?.sha256).toBe(sha256(sent));
      expect(records.filter((r) => r.message === 'artifact PUT failed, retrying')).toHaveLength(2);
    } finally {
      await tw.stop();
    }
  });

  it('retries a PUT whose connection is cut (a network error) and the artifact arrives intact', async () => {
    // A real loopback proxy in front of FakeQueue's object store: it cuts the first PUT's connection after some
    // of the body, then forwards the next ones.
    let puts = 0;
    const proxy = createServer((req, res) => {
      puts++;
      const target = new URL(req.url ?? '/', 'http://x').searchParams.get('target') ?? '';
      if (puts === 1) {
        req.once('data', () => req.socket.destroy());
        return;
      }
      const forward = httpRequest(
        `${target}${new URL(req.url ?? '/', 'http://x').pathname}`,
        { method: 'PUT', headers: req.headers },
        (upstream) => {
          res.writeHead(upstream.statusCode ?? 502, upstream.headers);
          upstream.pipe(res);
        },
      );
      req.pipe(forward);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxyBase = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    class CutQueue extends FakeQueue {
      override async createUpload(...args: Parameters<FakeQueue['createUpload']>) {
        const answer = await super.createUpload(...args);
        const put = answer.uploadMethod.putUrl;
        if (!put || !args[0].includes('/public/')) return answer;
        const real = new URL(put.url);
        const url = `${proxyBase}${real.pathname}?target=${encodeURIComponent(real.origin)}`;
        return { ...answer, uploadMethod: { putUrl: { ...put, url } } };
      }
    }
    const data = randomBytes(2 * 1024 * 1024).toString('base64');
    try {
      const result = await runPluginTask({
        queue: new CutQueue({ longPollMs: 20 }),
        plugins: [artifacts()],
        payload: {
          mock: { files: { 'cut.bin': data } },
          artifacts: [{ type: 'file', path: 'cut.bin', name: 'public/cut.bin' }],
        },
      });
      expect(result.resolution).toBe('completed');
      expect(puts).toBe(2);
      const artifact = result.artifacts.get('public/cut.bin');
      expect(sha256(artifact!.data!)).toBe(sha256(data));
      expect(artifact?.hashes?.sha256).toBe(sha256(data));
    } finally {
      proxy.close();
    }
  });

  it('makes the task exception/resource-unavailable when the object store keeps answering 5xx', async () => {
    // 1 attempt + 5 retries, all answered 503 by FakeQueue's loopback object store (about 6 s of backoff)
    const queue = new FakeQueue({ longPollMs: 20 });
    queue.failNext('put', 503, 6);
    const result = await runPluginTask({
      queue,
      plugins: [artifacts()],
      payload: {
        mock: { files: { 'big.bin': 'x'.repeat(20_000) } },
        artifacts: [{ type: 'file', path: 'big.bin', name: 'public/big.bin' }],
      },
    });
    expect(result.resolution).toBe('exception/resource-unavailable');
    expect(result.log).toContain('could not upload 1 artifact(s): public/big.bin');
    expect(result.log).toContain('answered 503');
  });

  it('makes the task an exception when uploads keep failing', async () => {
    const queue = new FakeQueue({ longPollMs: 20 });
    const result = await (async () => {
      queue.failNext('createArtifact', 400, 1);
      return runPluginTask({
        queue,
        plugins: [artifacts()],
        payload: {
          mock: { files: { 'a.txt': 'a' } },
          artifacts: [{ type: 'file', path: 'a.txt', name: 'public/a.txt' }],
        },
      });
    })();
    expect(result.resolution).toBe('exception/internal-error');
    expect(result.log).toContain('could not upload 1 artifact(s): public/a.txt');
  });

  it('runs at most `uploadConcurrency` uploads at once', async () => {
    class CountingQueue extends FakeQueue {
      inFlight = 0;
      peak = 0;
      override async createArtifact(
        taskId: string,
        runId: number,
        name: string,
        request: CreateArtifactRequest,
        credentials: Credentials,
      ) {
        const answer = await super.createArtifact(taskId, runId, name, request, credentials);
        if (request.storageType === 'object' && name.startsWith('public/')) {
          this.inFlight++;
          this.peak = Math.max(this.peak, this.inFlight);
          await new Promise((r) => setTimeout(r, 20));
        }
        return answer;
      }
      override async finishArtifact(
        taskId: string,
        runId: number,
        name: string,
        uploadId: string,
        credentials: Credentials,
      ) {
        await super.finishArtifact(taskId, runId, name, uploadId, credentials);
        if (name.startsWith('public/')) this.inFlight--;
      }
    }
    const queue = new CountingQueue({ longPollMs: 20 });
    const files = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`many/f${i}.txt`, `file ${i}`]));
    const result = await runPluginTask({
      queue,
      plugins: [artifacts({ uploadConcurrency: 2 })],
      payload: { mock: { files }, artifacts: [{ type: 'directory', path: 'many', name: 'public/many' }] },
    });
    expect(result.resolution).toBe('completed');
    expect([...result.artifacts.keys()].filter((n) => n.startsWith('public/many/'))).toHaveLength(8);
    expect(queue.peak).toBe(2);
  });
});
