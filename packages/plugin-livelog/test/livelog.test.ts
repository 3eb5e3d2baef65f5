import { writeFile } from 'node:fs/promises';
import { get, type IncomingMessage, request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BACKING_LOG_NAME,
  ConfigError,
  createAjv,
  type PluginV1,
  type TaskHookContext,
  type TaskLogWriter,
} from '@tcw/core';
import { createScriptEngine } from '@tcw/engine-script';
import { FakeQueue, runPluginTask, startTestWorker } from '@tcw/testing';
import { describe, expect, it } from 'vitest';
import provider, { LIVE_LOG_NAME, livelog, parseListen } from '../src/index.js';

/** A streaming HTTP reader that keeps what it has read, so a test can wait for text to arrive. */
function openReader(url: string) {
  let text = '';
  let status = 0;
  let headers: Record<string, unknown> = {};
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of waiters) w();
  };
  let ended = false;
  const ready = new Promise<void>((resolve, reject) => {
    const req = get(url, (res) => {
      status = res.statusCode ?? 0;
      headers = res.headers;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        wake();
      });
      res.on('end', () => {
        ended = true;
        wake();
      });
      resolve();
    });
    req.on('error', reject);
  });
  const until = (check: () => boolean) =>
    new Promise<void>((resolve, reject) => {
      const test = () => {
        if (check()) {
          waiters.delete(test);
          resolve();
        } else if (ended) {
          waiters.delete(test);
          reject(new Error(`reader ended without the expected text; got:\n${text}`));
        }
      };
      waiters.add(test);
      test();
    });
  return {
    ready,
    get text() {
      return text;
    },
    get status() {
      return status;
    },
    get headers() {
      return headers;
    },
    waitFor: (needle: string) => until(() => text.includes(needle)),
    waitForMatch: async (re: RegExp) => {
      await until(() => re.test(text));
      return re.exec(text) as RegExpExecArray;
    },
    end: () => until(() => ended),
  };
}

function fetchStatus(url: string, method = 'GET'): Promise<number> {
  return new Promise((resolve, reject) => {
    // resolves on the status line: a live log's body only ends with the task
    const req = request(url, { method }, (res) => {
      resolve(res.statusCode ?? 0);
      res.destroy();
    });
    req.on('error', reject);
    req.end();
  });
}

/** A plugin whose `started` hook hands its context to the test and waits until the test lets the task go on. */
function gate() {
  let release!: () => void;
  const released = new Promise<void>((r) => {
    release = r;
  });
  let reached!: (ctx: TaskHookContext) => void;
  const started = new Promise<TaskHookContext>((r) => {
    reached = r;
  });
  const plugin: PluginV1 = {
    specificationVersion: 'v1',
    name: 'test-gate',
    taskPlugin: () => ({
      async started(ctx) {
        reached(ctx);
        await released;
      },
    }),
  };
  return { plugin, started, release };
}

describe('livelog plugin: config', () => {
  it('validates listen and publicUrl, naming the config key', () => {
    const validate = createAjv().compile(provider.configSchema);
    expect(validate({ listen: '0.0.0.0:60023', publicUrl: 'https://w1.example.com:60023' })).toBe(true);
    expect(validate({ listen: '[::1]:0' })).toBe(true);
    expect(validate({ listen: '60023' })).toBe(false);
    expect(validate({ port: 1 })).toBe(false);
    expect(() => livelog({ listen: 'localhost' })).toThrow(ConfigError);
    expect(() => livelog({ listen: 'localhost' })).toThrow(/plugins\.livelog\.listen/);
    expect(() => livelog({ listen: '127.0.0.1:70000' })).toThrow(/plugins\.livelog\.listen/);
    expect(() => livelog({ publicUrl: 'ftp://x' })).toThrow(/plugins\.livelog\.publicUrl/);
    expect(parseListen('[::1]:8080')).toEqual({ host: '::1', port: 8080 });
    expect(parseListen('example.org:1')).toEqual({ host: 'example.org', port: 1 });
  });

  it('uses publicUrl as the base of the reference artifact', async () => {
    const plugin = livelog({ publicUrl: 'https://logs.example.com:9000/' });
    const g = gate();
    const tw = await startTestWorker({ plugins: [plugin, g.plugin] });
    try {
      const taskId = tw.submit({ mock: { log: 'hi' } });
      await g.started;
      const url = tw.queue.artifacts(taskId, 0).get(LIVE_LOG_NAME)?.url ?? '';
      expect(url).toMatch(/^https:\/\/logs\.example\.com:9000\/log\/[A-Za-z0-9_-]{27}$/);
      g.release();
      expect((await tw.result(taskId)).resolution).toBe('completed');
    } finally {
      g.release();
      await tw.stop();
    }
  });
});

describe('livelog plugin: serving the log', () => {
  it('serves the log from byte 0 to a reader attached mid-task, then new lines as they are written', async () => {
    const plugin = livelog();
    const g = gate();
    const tw = await startTestWorker({ plugins: [plugin, g.plugin] });
    try {
      const taskId = tw.submit({ mock: { log: ['first line', 'second line'] } });
      const ctx = await g.started;
      const live = tw.queue.artifacts(taskId, 0).get(LIVE_LOG_NAME);
      expect(live).toMatchObject({ storageType: 'reference', contentType: 'text/plain; charset=utf-8' });
      const url = live?.url ?? '';
      expect(url.startsWith(`${plugin.baseUrl}/log/`)).toBe(true);
      // the token is 20 random bytes (160 bits) in base64url
      expect(url.split('/log/')[1]).toMatch(/^[A-Za-z0-9_-]{27}$/);

      const reader = openReader(url);
      await reader.ready;
      expect(reader.status).toBe(200);
      expect(reader.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(reader.headers['transfer-encoding']).toBe('chunked');
      await reader.waitFor('second line\n');
      expect(reader.text.startsWith('[taskcluster ')).toBe(true);
      expect(reader.text).toContain(`Task ${taskId} run 0`);

      const writer: TaskLogWriter = ctx.log;
      writer.write('third line, written while the reader waits\n');
      await reader.waitFor('third line, written while the reader waits\n');
      writer.write('fourth');
      await reader.waitFor('fourth');

      g.release();
      const result = await tw.result(taskId);
      await reader.end();
      expect(result.resolution).toBe('completed');
      expect(reader.text).toBe(result.log);
      expect(result.artifacts.get(LIVE_LOG_NAME)).toMatchObject({
        storageType: 'link',
        artifact: BACKING_LOG_NAME,
      });
    } finally {
      g.release();
      await tw.stop();
    }
  });

  it('answers 404 to an unknown or missing token, and forgets a task once it is disposed', async () => {
    const plugin = livelog();
    const g = gate();
    const tw = await startTestWorker({ plugins: [plugin, g.plugin] });
    try {
      const taskId = tw.submit({ mock: { log: 'secret-ish output' } });
      await g.started;
      const url = tw.queue.artifacts(taskId, 0).get(LIVE_LOG_NAME)?.url ?? '';
      expect(await fetchStatus(url)).toBe(200);
      expect(await fetchStatus(url, 'HEAD')).toBe(200);
      expect(await fetchStatus(`${plugin.baseUrl}/log/${'A'.repeat(27)}`)).toBe(404);
      expect(await fetchStatus(`${plugin.baseUrl}/log/`)).toBe(404);
      expect(await fetchStatus(`${plugin.baseUrl}/`)).toBe(404);
      expect(await fetchStatus(`${plugin.baseUrl}/log/${taskId}`)).toBe(404);
      expect(await fetchStatus(url, 'POST')).toBe(405);
      const disposed = new Promise<void>((resolve) =>
        tw.worker.events.once('task-resolved', () => resolve()),
      );
      g.release();
      await tw.result(taskId);
      await disposed;
      expect(await fetchStatus(url)).toBe(404);
    } finally {
      g.release();
      await tw.stop();
    }
  });

  it('cuts off a reader that is still behind on a finished task after lingerMs', async () => {
    const plugin = livelog({ lingerMs: 50 });
    const g = gate();
    const tw = await startTestWorker({ plugins: [plugin, g.plugin] });
    const size = 32 * 1024 * 1024;
    try {
      // 32 MiB of log: more than the loopback socket buffers hold, so a paused reader stays behind
      const taskId = tw.submit({ mock: { log: 'x'.repeat(size) } });
      await g.started;
      const url = tw.queue.artifacts(taskId, 0).get(LIVE_LOG_NAME)?.url ?? '';
      const response = await new Promise<IncomingMessage>((resolve, reject) => {
        get(url, (res) => {
          res.pause();
          resolve(res);
        }).on('error', reject);
      });
      const disposed = new Promise<void>((resolve) =>
        tw.worker.events.once('task-resolved', () => resolve()),
      );
      g.release();
      await tw.result(taskId);
      await disposed;
      // the plugin's 50 ms linger timer was set before this one, so it has fired when this one does
      await new Promise((r) => setTimeout(r, 200));
      let received = 0;
      response.on('data', (chunk: Buffer) => {
        received += chunk.length;
      });
      const complete = await new Promise<boolean>((resolve) => {
        response.on('close', () => resolve(response.complete));
        response.on('error', () => {});
        response.resume();
      });
      expect(complete).toBe(false);
      expect(received).toBeLessThan(size);
    } finally {
      g.release();
      await tw.stop();
    }
  });

  it('gives a reader of a finished task the whole log and then EOF', async () => {
    const plugin = livelog();
    let url = '';
    let seen: string | undefined;
    const afterFinish: PluginV1 = {
      specificationVersion: 'v1',
      name: 'test-after-finish',
      taskPlugin: (context) => ({
        started() {
          url = tw.queue.artifacts(context.task.taskId, 0).get(LIVE_LOG_NAME)?.url ?? '';
        },
        async finished() {
          // the log is closed and uploaded (live.log is a link by now), the task not yet disposed
          const reader = openReader(url);
          await reader.ready;
          await reader.end();
          seen = reader.text;
        },
      }),
    };
    const tw = await startTestWorker({ plugins: [plugin, afterFinish] });
    try {
      const disposed = new Promise<void>((resolve) =>
        tw.worker.events.once('task-resolved', () => resolve()),
      );
      const result = await tw.run({ mock: { log: ['one', 'two', 'three'] } });
      await disposed;
      expect(result.resolution).toBe('completed');
      expect(seen).toBe(result.log);
      expect(seen).toContain('one\ntwo\nthree\n');
      expect(seen).toContain('=== Task Finished ===');
      expect(await fetchStatus(url)).toBe(404);
    } finally {
      await tw.stop();
    }
  });
});

describe('livelog plugin: artifacts on every path', () => {
  it('links live.log to the backing log after an exception', async () => {
    const result = await runPluginTask({
      plugins: [livelog()],
      payload: { mock: { log: 'about to break', error: 'internal-error' } },
    });
    expect(result.resolution).toBe('exception/internal-error');
    expect(result.log).toContain('about to break');
    expect(result.artifacts.get(LIVE_LOG_NAME)).toMatchObject({
      storageType: 'link',
      artifact: BACKING_LOG_NAME,
    });
    expect(result.hooks.filter((h) => h.plugin === 'livelog').map((h) => h.hook)).toEqual([
      'taskPlugin',
      'prepare',
      'buildSandbox',
      'started',
      'stopped',
      'exception',
      'dispose',
    ]);
  });

  it('links live.log after a failed task and after a malformed payload', async () => {
    const failed = await runPluginTask({ plugins: [livelog()], payload: { mock: { exitCode: 1 } } });
    expect(failed.resolution).toBe('failed');
    expect(failed.artifacts.get(LIVE_LOG_NAME)?.storageType).toBe('link');
    const malformed = await runPluginTask({ plugins: [livelog()], payload: { mock: { nope: 1 } } });
    expect(malformed.resolution).toBe('exception/malformed-payload');
    expect(malformed.artifacts.get(BACKING_LOG_NAME)?.storageType).toBe('object');
  });

  it('leaves live.log a reference when the backing log could not be uploaded', async () => {
    const queue = new FakeQueue({ longPollMs: 20 });
    // every createArtifact of the backing log fails (400: not retried); live.log must not point at nothing
    const original = queue.createArtifact.bind(queue);
    queue.createArtifact = async (taskId, runId, name, req, creds) => {
      if (name === BACKING_LOG_NAME) throw Object.assign(new Error('injected 400'), { statusCode: 400 });
      return original(taskId, runId, name, req, creds);
    };
    const result = await runPluginTask({ queue, plugins: [livelog()], payload: { mock: { log: 'x' } } });
    expect(result.artifacts.get(LIVE_LOG_NAME)?.storageType).toBe('reference');
  });

  it('without livelog the backing log is still uploaded (by core) and there is no live.log', async () => {
    const lines = Array.from({ length: 1000 }, (_, i) => `plain line ${i}`);
    const result = await runPluginTask({ plugins: [], payload: { mock: { log: lines } } });
    expect(result.resolution).toBe('completed');
    expect(result.artifacts.get(BACKING_LOG_NAME)).toMatchObject({
      storageType: 'object',
      contentEncoding: 'gzip',
    });
    expect(result.log).toContain('plain line 99');
    expect(result.artifacts.has(LIVE_LOG_NAME)).toBe(false);
  });

  it('refuses to start when the listen address is taken', async () => {
    const first = livelog();
    const tw = await startTestWorker({ plugins: [first] });
    try {
      const port = new URL(first.baseUrl ?? '').port;
      await expect(startTestWorker({ plugins: [livelog({ listen: `127.0.0.1:${port}` })] })).rejects.toThrow(
        /EADDRINUSE/,
      );
    } finally {
      await tw.stop();
    }
  });
});

describe('livelog plugin: with a real process (script engine)', () => {
  it('a reader attached mid-task sees the whole log from byte 0, then lines as the process prints them', async () => {
    const fixture = fileURLToPath(new URL('./fixtures/chatty.mjs', import.meta.url));
    const engine = createScriptEngine({
      command: [process.execPath, fixture],
      schema: {
        type: 'object',
        required: ['before', 'after'],
        properties: { before: { type: 'integer' }, after: { type: 'integer' } },
      },
    });
    const tw = await startTestWorker({ engine, plugins: [livelog()] });
    try {
      const taskId = tw.submit({ before: 50, after: 50 });
      // the reference exists from `prepare` on; the process then prints and waits for `go`
      let url: string | undefined;
      while (!url) {
        url = tw.queue.artifacts(taskId, 0).get(LIVE_LOG_NAME)?.url;
        if (!url) await new Promise((r) => setTimeout(r, 10));
      }
      // a first reader follows the task until the process has printed its lines and waits for `go` ...
      const first = openReader(url);
      await first.ready;
      const cwd = (await first.waitForMatch(/\ncwd=(.*)\n/))[1] as string;
      expect(first.text).toContain('before 0\nbefore 1\n');
      expect(first.text).toContain('before 49\n');
      expect(first.text).not.toContain('after 0');
      // ... then a second reader attaches mid-task: it gets everything from byte 0
      const late = openReader(url);
      await late.ready;
      await late.waitFor(`cwd=${cwd}\n`);
      expect(late.text).toBe(first.text);
      expect(late.text.startsWith('[taskcluster ')).toBe(true);
      // and then the lines the process prints from now on
      await writeFile(join(cwd, 'go'), '');
      await late.waitFor('after 49\n');
      const result = await tw.result(taskId);
      await Promise.all([first.end(), late.end()]);
      expect(result.resolution).toBe('completed');
      expect(late.text).toBe(result.log);
      expect(first.text).toBe(result.log);
      expect(result.artifacts.get(LIVE_LOG_NAME)?.storageType).toBe('link');
    } finally {
      await tw.stop();
    }
  });
});
