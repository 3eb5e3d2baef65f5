import { mkdirSync, mkdtempSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type EngineCapabilities,
  type EngineInitContext,
  type EngineV1,
  FatalError,
  FeatureNotSupportedError,
  InternalError,
  type JSONSchema,
  type Logger,
  MalformedPayloadError,
  type PayloadSchemaPart,
  type ResultSetV1,
  removeTree,
  type SandboxBuilderV1,
  type SandboxOptions,
  type SandboxV1,
  silentLogger,
  walkFiles,
} from '@tcw/core';
import { startTree, type TreeProcess } from '@tcw/core/process';

export interface ScriptEngineOptions {
  /** The command run for every task (argv, no shell). */
  command: string[];
  /** JSON schema of the task payload; its root must be `type: object`. Its properties become the payload schema. */
  schema: JSONSchema;
  /** Extra environment for the script (TASK_ID and RUN_ID always win). Default: `{PATH: <the worker's PATH>}`. */
  env?: Record<string, string>;
  /** Where the per-task folders go (default: the worker's work directory, else the system temp folder). */
  tasksDir?: string;
  /** Working directory prefix for relative paths in `command` (the app passes the config file's folder). */
  baseDir?: string;
}

const capabilities: EngineCapabilities = {
  env: false,
  volumes: false,
  proxies: false,
  files: false,
  extract: false,
  gracefulAbort: false,
};

const FOLDER_PREFIX = 'task-';

/** Exit codes of the script interface (seed 000). */
export const EXIT_CODES = {
  completed: 0,
  failed: 1,
  malformedPayload: 2,
  internalError: 3,
  fatalError: 4,
} as const;

function validateOptions(options: ScriptEngineOptions): void {
  if (!Array.isArray(options.command) || options.command.length === 0) {
    throw new TypeError('engines.script.command must be a non-empty array of strings');
  }
  if (typeof options.schema !== 'object' || options.schema === null || options.schema.type !== 'object') {
    throw new TypeError('engines.script.schema must be a JSON schema whose root is `type: object`');
  }
}

/**
 * The script engine (seed 000): for declarative, security-sensitive workers. Tasks send data, never commands: the
 * configured command gets the payload (only the keys of the configured schema) as JSON on stdin, `TASK_ID` and
 * `RUN_ID` in its environment, a fresh working folder with `./artifacts/`; its stdout is the task log, its stderr
 * lines are prefixed `[worker:error]`; its exit code decides the resolution (0 completed, 1 failed,
 * 2 malformed-payload, 3 internal-error, 4 internal-error and the worker stops; anything else internal-error).
 * Nothing from the payload is ever executed or put on the command line.
 */
export function createScriptEngine(options: ScriptEngineOptions): EngineV1 {
  validateOptions(options);
  const properties = (options.schema.properties ?? {}) as Record<string, JSONSchema>;
  const required = (options.schema.required ?? []) as string[];
  // `./x` and `../x` anywhere in the configured command (`[node, ./greet.mjs]`) are relative to the config's
  // folder. The command comes from the worker's config only, never from a payload.
  const command = options.command.map((part) =>
    options.baseDir && (part.startsWith('./') || part.startsWith('../')) ? join(options.baseDir, part) : part,
  );
  let tasksDir = options.tasksDir;
  let logger: Logger = silentLogger;

  const payloadSchema = (): PayloadSchemaPart => ({
    properties,
    ...(required.length ? { required } : {}),
    ...(options.schema.$defs ? { $defs: options.schema.$defs as Record<string, JSONSchema> } : {}),
  });

  return {
    specificationVersion: 'v1',
    name: 'script',
    capabilities,
    payloadSchema,
    async init(context: EngineInitContext) {
      logger = context.logger;
      tasksDir ??= join(context.workDir, 'script-tasks');
      await mkdir(tasksDir, { recursive: true });
      // folders of a previous worker that crashed mid-task
      for (const name of await readdir(tasksDir)) {
        if (name.startsWith(FOLDER_PREFIX)) {
          logger.info({ folder: name }, 'removing a task folder left by a previous worker');
          await rm(join(tasksDir, name), { recursive: true, force: true });
        }
      }
    },
    async newSandboxBuilder(opts: SandboxOptions): Promise<SandboxBuilderV1> {
      const base = tasksDir ?? tmpdir();
      const prefix = join(base, `${FOLDER_PREFIX}${opts.task.taskId}-${opts.task.runId}-`);
      // Three metadata syscalls per task: the synchronous forms take tens of microseconds on a local disk, their
      // thread-pool forms several times that in CPU and ~0.3 ms of latency each.
      // The base folder exists (made at init); make it again only if someone removed it since.
      let dir: string;
      try {
        dir = mkdtempSync(prefix);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        mkdirSync(base, { recursive: true });
        dir = mkdtempSync(prefix);
      }
      mkdirSync(join(dir, 'artifacts'));
      mkdirSync(join(dir, 'artifacts', 'public'));
      let state: 'building' | 'started' | 'discarded' = 'building';
      const unsupported = (feature: string) => () => {
        throw new FeatureNotSupportedError(feature, `the script engine does not support ${feature}`);
      };
      return {
        specificationVersion: 'v1',
        setEnv: unsupported('env'),
        attachVolume: unsupported('volumes'),
        attachProxy: unsupported('proxies'),
        writeFile: async () => unsupported('files')(),
        async start() {
          if (state !== 'building') throw new Error(`sandbox builder is ${state}`);
          state = 'started';
          return startScript(command, options.env, dir, opts, logger);
        },
        async discard() {
          if (state === 'discarded') return;
          state = 'discarded';
          await removeTree(dir);
        },
      };
    },
  };
}

function lineSplitter(write: (line: string) => void) {
  let partial = '';
  return {
    push(chunk: Buffer) {
      const text = partial + chunk.toString('utf8');
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) write(line);
    },
    flush() {
      if (partial) write(partial);
      partial = '';
    },
  };
}

function outcomeOf(code: number | null, signal: string | null): Error | undefined {
  switch (code) {
    case EXIT_CODES.completed:
    case EXIT_CODES.failed:
      return undefined;
    case EXIT_CODES.malformedPayload:
      return new MalformedPayloadError(
        'the script rejected the payload (exit code 2); see the [worker:error] lines above',
      );
    case EXIT_CODES.internalError:
      return new InternalError('the script reported an internal error (exit code 3)');
    case EXIT_CODES.fatalError:
      return new FatalError('the script reported a fatal internal error (exit code 4); the worker stops');
    case null:
      return new InternalError(`the script was killed by ${signal ?? 'a signal'}`);
    default:
      return new InternalError(`the script exited with reserved exit code ${code}`);
  }
}

async function startScript(
  command: string[],
  extraEnv: Record<string, string> | undefined,
  dir: string,
  opts: SandboxOptions,
  logger: Logger,
): Promise<SandboxV1> {
  const env: Record<string, string> = {
    ...(extraEnv ?? { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin' }),
    TASK_ID: opts.task.taskId,
    RUN_ID: String(opts.task.runId),
  };
  let tree: TreeProcess;
  try {
    tree = await startTree(command, { cwd: dir, env, stdin: 'pipe' });
  } catch (error) {
    throw new InternalError(`cannot start the script ${command[0]}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  let aborted = false;
  const stderr = lineSplitter((line) => opts.log.write(`[worker:error] ${line}\n`));
  tree.stdout.on('data', (chunk: Buffer) => opts.log.write(chunk));
  tree.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  const streamsDone = Promise.all([
    new Promise<void>((r) => tree.stdout.once('close', () => r())),
    new Promise<void>((r) => tree.stderr.once('close', () => r())),
  ]);
  tree.stdin?.on('error', () => {
    // the script may exit without reading its input; that is its business
  });
  tree.stdin?.end(JSON.stringify(opts.payload));

  let result: Promise<ResultSetV1> | undefined;
  const finish = async (): Promise<ResultSetV1> => {
    const exit = await tree.exited;
    await Promise.race([streamsDone, new Promise((r) => setTimeout(r, 2000))]);
    stderr.flush();
    let error = aborted ? undefined : outcomeOf(exit.code, exit.signal);
    if (exit.code === 127 && exit.signal === null && !aborted) {
      logger.warn({ command }, 'script exited 127 (command not found?)');
    }
    if (!aborted) {
      const uploadError = await uploadArtifacts(dir, opts);
      if (uploadError && !error) error = uploadError;
    }
    const exitCode = aborted ? null : exit.code;
    return {
      specificationVersion: 'v1',
      success: !aborted && exit.code === EXIT_CODES.completed && !error,
      exitCode,
      aborted,
      ...(error ? { error } : {}),
      async dispose() {
        await removeTree(dir);
      },
    };
  };
  return {
    specificationVersion: 'v1',
    wait() {
      result ??= finish();
      return result;
    },
    async abort() {
      if (!aborted) {
        aborted = true;
        tree.kill();
      }
      await tree.exited;
    },
  };
}

/** Uploads `./artifacts/**`: files under `public/` as public artifacts, others under their own (private) names. */
async function uploadArtifacts(dir: string, opts: SandboxOptions): Promise<Error | undefined> {
  const root = join(dir, 'artifacts');
  const uploads: Array<Promise<unknown>> = [];
  const failures: string[] = [];
  try {
    for await (const entry of walkFiles(dir, root)) {
      if (entry.kind === 'refused') {
        opts.log.error(`artifact ${entry.relPath} refused: ${entry.message}`);
        uploads.push(
          opts.artifacts
            .createError(entry.relPath, 'invalid-resource-on-worker', entry.message)
            .catch((e: Error) => failures.push(`${entry.relPath}: ${e.message}`)),
        );
        continue;
      }
      uploads.push(
        opts.artifacts
          .uploadFile({ name: entry.relPath, path: entry.path })
          .then(() => opts.log.info(`uploaded artifact ${entry.relPath} (${entry.size} bytes)`))
          .catch((e: Error) => failures.push(`${entry.relPath}: ${e.message}`)),
      );
    }
  } catch (error) {
    failures.push(`reading ./artifacts: ${(error as Error).message}`);
  }
  await Promise.all(uploads);
  if (failures.length === 0) return undefined;
  for (const f of failures) opts.log.error(`artifact upload failed: ${f}`);
  return new InternalError(`could not upload ${failures.length} artifact(s): ${failures.join('; ')}`);
}
