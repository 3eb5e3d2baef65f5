import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  type EngineV1,
  FeatureNotSupportedError,
  MalformedPayloadError,
  type SandboxBuilderV1,
  TcwError,
} from '@tcw/core';
import { describe, expect, it } from 'vitest';
import { runSandbox } from './run-sandbox.js';

type Payload = Record<string, unknown>;

/** How to make the standard conformance tasks in an engine's own payload format. */
export interface ConformancePayloads {
  /** Exits with `code`. */
  exit(code: number): Payload;
  /** Writes `text` and a newline to its output, exits 0. */
  print(text: string): Payload;
  /** Writes `text` to its error output (stderr), exits 0. */
  printError?(text: string): Payload;
  /** Runs for `ms` (it should start a child process too, so aborting must end a tree). */
  sleep(ms: number): Payload;
  /** Prints the value of the environment variable `name` (capability `env`). */
  printEnv?(name: string): Payload;
  /** Creates these files (relative path → content) where `artifactPath` finds them (capability `extract`). */
  writeFiles?(files: Record<string, string>): Payload;
  /** Prints the content of `file` in the volume mounted at `mountPoint` (capability `volumes`). */
  readVolume?(mountPoint: string, file: string): Payload;
  /**
   * GETs `/ping` from the proxy attached under `name`, reached the way the engine exposes proxies to tasks, and
   * prints the body (capability `proxies`).
   */
  fetchProxy?(name: string): Payload;
}

export interface EngineConformanceSpec {
  /** Shown in the test names. */
  name: string;
  /** A fresh engine; called for every test. `init` is called if the engine has it. */
  createEngine(): EngineV1 | Promise<EngineV1>;
  payloads: ConformancePayloads;
  /** A created file's path as `extractFile` takes it (default: the relative path unchanged). */
  artifactPath?(relativePath: string): string;
  /** A folder's path as `extractFolder` takes it (default: `artifactPath`). */
  folderPath?(relativePath: string): string;
  /** Where volumes are mounted (default `/mnt/cache`). */
  volumeMountPoint?: string;
  /** Per-test timeout (default 60 s). */
  timeoutMs?: number;
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

async function makeEngine(spec: EngineConformanceSpec): Promise<EngineV1> {
  const engine = await spec.createEngine();
  if (engine.init) {
    const workDir = await mkdtemp(join(tmpdir(), 'tcw-conformance-'));
    const { silentLogger } = await import('@tcw/core');
    await engine.init({
      logger: silentLogger,
      worker: { taskQueueId: 'tcw-test/fake', workerGroup: 'g', workerId: 'w' },
      workDir,
    });
  }
  return engine;
}

function expectCode(error: unknown, code: string): void {
  expect(TcwError.isInstance(error), `expected a TcwError with code ${code}, got ${String(error)}`).toBe(
    true,
  );
  expect((error as TcwError).code).toBe(code);
}

/**
 * The engine conformance suite: one call in an engine package's test file registers every test, skipping only
 * what the engine declares unsupported (and checking that those methods throw `FeatureNotSupportedError`).
 *
 * ```ts
 * describeEngineConformance({ name: 'docker', createEngine: () => createDockerEngine({...}), payloads: {...} });
 * ```
 */
export function describeEngineConformance(spec: EngineConformanceSpec): void {
  const timeout = spec.timeoutMs ?? 60_000;
  const p = spec.payloads;
  const artifactPath = spec.artifactPath ?? ((path: string) => path);
  const folderPath = spec.folderPath ?? artifactPath;

  describe(`engine conformance: ${spec.name}`, () => {
    it('declares its contract and a payload schema part', async () => {
      const engine = await makeEngine(spec);
      expect(engine.specificationVersion).toBe('v1');
      expect(typeof engine.name).toBe('string');
      const part = engine.payloadSchema();
      expect(typeof part.properties).toBe('object');
      await engine.dispose?.();
    });

    it('exit code 0 is a success', { timeout }, async () => {
      const engine = await makeEngine(spec);
      const run = await runSandbox(engine, p.exit(0));
      expect(run.result.success).toBe(true);
      expect(run.result.exitCode).toBe(0);
      expect(run.result.aborted).toBe(false);
      await run.dispose();
      await engine.dispose?.();
    });

    it('a non-zero exit code is a failure with that code', { timeout }, async () => {
      const engine = await makeEngine(spec);
      const run = await runSandbox(engine, p.exit(1));
      expect(run.result.success).toBe(false);
      expect(run.result.exitCode).toBe(1);
      await run.dispose();
      await engine.dispose?.();
    });

    it('the task output reaches the task log', { timeout }, async () => {
      const engine = await makeEngine(spec);
      const marker = `conformance-${Math.random().toString(36).slice(2)}`;
      const run = await runSandbox(engine, p.print(marker));
      expect(await run.log()).toContain(marker);
      expect(run.result.success).toBe(true);
      await run.dispose();
      await engine.dispose?.();
    });

    if (p.printError) {
      const printError = p.printError;
      it('error output reaches the task log', { timeout }, async () => {
        const engine = await makeEngine(spec);
        const marker = `stderr-${Math.random().toString(36).slice(2)}`;
        const run = await runSandbox(engine, printError(marker));
        expect(await run.log()).toContain(marker);
        await run.dispose();
        await engine.dispose?.();
      });
    }

    it('wait() always returns the same result set', { timeout }, async () => {
      const engine = await makeEngine(spec);
      const run = await runSandbox(engine, p.exit(0));
      expect(await run.sandbox.wait()).toBe(run.result);
      await run.dispose();
      await engine.dispose?.();
    });

    it('abort() ends a running task: aborted, not a success', { timeout }, async () => {
      const engine = await makeEngine(spec);
      const run = await runSandbox(engine, p.sleep(120_000), {
        onStarted: async (sandbox) => {
          await new Promise((r) => setTimeout(r, 300));
          await sandbox.abort({ graceMs: 500 });
        },
      });
      expect(run.result.aborted).toBe(true);
      expect(run.result.success).toBe(false);
      await run.sandbox.abort({ graceMs: 0 });
      await run.dispose();
      await engine.dispose?.();
    });

    it('discard() releases a builder that was never started', { timeout }, async () => {
      const engine = await makeEngine(spec);
      await expect(
        runSandbox(engine, p.exit(0), {
          configure: async (builder) => {
            await builder.discard();
            await builder.discard();
            throw new Error('discarded on purpose');
          },
        }),
      ).rejects.toThrow('discarded on purpose');
      await engine.dispose?.();
    });

    describe('capability: env', () => {
      it('setEnv reaches the task; a bad name is a malformed payload', { timeout }, async () => {
        const engine = await makeEngine(spec);
        if (!engine.capabilities.env) {
          await expectUnsupported(engine, p.exit(0), (b) => b.setEnv('A', 'b'));
          return;
        }
        if (!p.printEnv) throw new Error(`${spec.name} declares env but the spec has no printEnv payload`);
        const run = await runSandbox(engine, p.printEnv('TCW_CONFORMANCE'), {
          configure: (b) => b.setEnv('TCW_CONFORMANCE', 'value with spaces = ok'),
        });
        expect(await run.log()).toContain('value with spaces = ok');
        await run.dispose();
        let error: unknown;
        await runSandbox(engine, p.exit(0), { configure: (b) => b.setEnv('1 bad=name', 'x') }).catch((e) => {
          error = e;
        });
        expectCode(error, MalformedPayloadError.code);
        await engine.dispose?.();
      });
    });

    describe('capability: extract', () => {
      it('extracts files and folders; refuses paths that leave the sandbox', { timeout }, async () => {
        const engine = await makeEngine(spec);
        if (!engine.capabilities.extract) {
          const run = await runSandbox(engine, p.exit(0));
          expect(run.result.extractFile).toBeUndefined();
          await run.dispose();
          await engine.dispose?.();
          return;
        }
        if (!p.writeFiles)
          throw new Error(`${spec.name} declares extract but the spec has no writeFiles payload`);
        const run = await runSandbox(
          engine,
          p.writeFiles({ 'out/a.txt': 'alpha', 'out/sub/b.txt': 'beta', 'c.txt': 'gamma' }),
        );
        expect(run.result.success).toBe(true);
        const file = await run.result.extractFile!(artifactPath('c.txt'));
        expect(await readAll(file.stream)).toBe('gamma');
        const seen: Record<string, string> = {};
        await run.result.extractFolder!(folderPath('out'), async (rel, f) => {
          if ('refused' in f) throw new Error(f.refused);
          seen[rel] = await readAll(f.stream);
        });
        expect(seen).toEqual({ 'a.txt': 'alpha', 'sub/b.txt': 'beta' });
        await expect(run.result.extractFile!(artifactPath('missing.txt'))).rejects.toThrow();
        let escaped: unknown;
        await run.result.extractFile!(artifactPath('../../../../../../etc/passwd')).then(
          async (f) => {
            const text = await readAll(f.stream);
            escaped = text.includes('root:') ? new Error('escaped the sandbox') : undefined;
          },
          (e) => {
            escaped = e;
          },
        );
        expect(escaped, 'a path leaving the sandbox must be refused').toBeDefined();
        expect((escaped as Error).message).not.toBe('escaped the sandbox');
        await run.dispose();
        await engine.dispose?.();
      });
    });

    describe('capability: volumes', () => {
      it('a mounted volume is readable by the task', { timeout }, async () => {
        const engine = await makeEngine(spec);
        const mountPoint = spec.volumeMountPoint ?? '/mnt/cache';
        if (!engine.capabilities.volumes) {
          await expectUnsupported(engine, p.exit(0), (b) =>
            b.attachVolume(mountPoint, { hostPath: tmpdir(), readOnly: true }),
          );
          return;
        }
        if (!p.readVolume)
          throw new Error(`${spec.name} declares volumes but the spec has no readVolume payload`);
        const hostPath = await mkdtemp(join(tmpdir(), 'tcw-volume-'));
        const { writeFile } = await import('node:fs/promises');
        await writeFile(join(hostPath, 'seed.txt'), 'from-the-host');
        const run = await runSandbox(engine, p.readVolume(mountPoint, 'seed.txt'), {
          configure: (b) => b.attachVolume(mountPoint, { hostPath, readOnly: false }),
        });
        expect(await run.log()).toContain('from-the-host');
        expect(await readFile(join(hostPath, 'seed.txt'), 'utf8')).toBe('from-the-host');
        await run.dispose();
        await rm(hostPath, { recursive: true, force: true });
        await engine.dispose?.();
      });
    });

    describe('capability: proxies', () => {
      it('an attached proxy is reachable by the task', { timeout }, async () => {
        const engine = await makeEngine(spec);
        if (!engine.capabilities.proxies) {
          await expectUnsupported(engine, p.exit(0), (b) => {
            b.attachProxy('ping', { target: 'http://127.0.0.1:1' });
          });
          return;
        }
        if (!p.fetchProxy)
          throw new Error(`${spec.name} declares proxies but the spec has no fetchProxy payload`);
        const server = createServer((req, res) => res.end(`pong ${req.url}`));
        await new Promise<void>((r) => server.listen(0, '0.0.0.0', () => r()));
        const target = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        const run = await runSandbox(engine, p.fetchProxy('ping'), {
          configure: (b) => {
            b.attachProxy('ping', { target });
          },
        });
        expect(await run.log()).toContain('pong');
        await run.dispose();
        server.close();
        await engine.dispose?.();
      });
    });
  });
}

async function expectUnsupported(
  engine: EngineV1,
  payload: Payload,
  call: (builder: SandboxBuilderV1) => void | Promise<void>,
): Promise<void> {
  let error: unknown;
  await runSandbox(engine, payload, {
    configure: async (b) => {
      try {
        await call(b);
      } catch (e) {
        error = e;
      }
    },
  }).then((run) => run.dispose());
  expect(
    FeatureNotSupportedError.isFeatureNotSupported(error),
    `expected FeatureNotSupportedError, got ${String(error)}`,
  ).toBe(true);
  await engine.dispose?.();
}
