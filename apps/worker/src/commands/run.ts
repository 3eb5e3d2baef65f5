import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';
import type { Worker } from '@tcw/core';
import taskcluster from 'taskcluster-client';
import { loadConfig } from '../config/load.js';
import { identityOf } from '../defaults.js';
import { exitCodeFor, followTask } from '../follow.js';
import { createLogger } from '../logger.js';
import { readTaskFile, TaskFileError } from '../task-file.js';
import { findConfig } from './find-config.js';
import { type CommandIo, EXIT } from './io.js';
import { startupFailure, startWorker } from './start.js';

const USAGE = `usage: tcw run TASK_FILE [--config FILE] [--out DIR]

Runs one task on this machine, no deployment needed: a throwaway embedded queue, the worker of the config
(engine and plugins), the task. The log goes to stdout, worker messages to stderr, the task's artifacts to DIR
(when given). Exits 0 (completed), 1 (failed) or 2 (exception).
`;

/** `tcw run`. */
export async function runRun(argv: string[], io: CommandIo): Promise<number> {
  let parsed: {
    values: { config?: string | undefined; out?: string | undefined; help?: boolean | undefined };
    positionals: string[];
  };
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        out: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    io.stderr.write(`${(error as Error).message}\n${USAGE}`);
    return EXIT.usage;
  }
  if (parsed.values.help) {
    io.stdout.write(USAGE);
    return EXIT.ok;
  }
  const [file, ...extra] = parsed.positionals;
  if (!file || extra.length) {
    io.stderr.write(USAGE);
    return EXIT.usage;
  }
  const scratch = await mkdtemp(join(tmpdir(), 'tcw-run-'));
  // from here on a signal stops the worker (once it has started, if it is still starting): the scratch folder and
  // the embedded queue are always cleaned up
  let interrupted: NodeJS.Signals | undefined;
  let worker: Worker | undefined;
  const stop = (signal: NodeJS.Signals) => {
    interrupted ??= signal;
    worker?.stopNow(`interrupted (${signal})`);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    let started: Awaited<ReturnType<typeof startWorker>>;
    let task: Awaited<ReturnType<typeof readTaskFile>>;
    try {
      const loaded = await loadConfig(await findConfig(parsed.values.config, io.env), { env: io.env });
      const config = { ...loaded.config };
      delete config.rootUrl;
      delete config.credentials;
      config.worker = { ...config.worker, workDir: join(scratch, 'worker') };
      task = await readTaskFile(file, { taskQueueId: identityOf(config).taskQueueId });
      started = await startWorker(
        { ...loaded, config },
        {
          io,
          capacity: 1,
          localQueueStateDir: join(scratch, 'queue'),
          localQueuePort: 0,
          logger: createLogger({
            level: config.logging?.level ?? 'warn',
            ...(config.logging?.pretty !== undefined ? { pretty: config.logging.pretty } : {}),
          }),
          onStarted: (w) => {
            worker = w;
            if (interrupted) w.stopNow(`interrupted (${interrupted})`);
          },
        },
      );
    } catch (error) {
      if (error instanceof TaskFileError) {
        io.stderr.write(`tcw run: ${error.message}\n`);
        return EXIT.usage;
      }
      const failure = startupFailure(error);
      io.stderr.write(`tcw run: ${failure.message}\n`);
      return failure.code;
    }
    const queue = new taskcluster.Queue({ rootUrl: started.rootUrl, credentials: started.credentials });
    try {
      if (interrupted) {
        io.stderr.write(`tcw run: interrupted (${interrupted}) before the task was created; nothing ran\n`);
        return EXIT.taskException;
      }
      await queue.createTask(task.taskId, task.definition);
      const result = await followTask({ queue, taskId: task.taskId, out: io.stdout });
      if (parsed.values.out) await downloadArtifacts(queue, task.taskId, result.runId, parsed.values.out, io);
      io.stderr.write(
        `tcw: task ${task.taskId}: ${result.state}${result.state === 'exception' ? ` (${result.reasonResolved})` : ''}\n`,
      );
      return exitCodeFor(result.state);
    } catch (error) {
      const e = error as { statusCode?: number; message: string };
      io.stderr.write(`tcw run: ${e.message}\n`);
      return EXIT.usage;
    } finally {
      started.worker.stopGracefully('tcw run is done');
      await started.done;
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await rm(scratch, { recursive: true, force: true });
  }
}

async function downloadArtifacts(
  queue: InstanceType<typeof taskcluster.Queue>,
  taskId: string,
  runId: number,
  outDir: string,
  io: CommandIo,
): Promise<void> {
  const root = resolve(outDir);
  let token: string | undefined;
  do {
    const page = await queue.listArtifacts(taskId, String(runId), token ? { continuationToken: token } : {});
    for (const artifact of page.artifacts as Array<{ name: string; storageType: string }>) {
      if (artifact.storageType !== 'object' && artifact.storageType !== 's3') continue;
      const target = resolve(root, artifact.name);
      if (!target.startsWith(root + sep)) continue;
      await mkdir(dirname(target), { recursive: true });
      await taskcluster.downloadArtifact({
        taskId,
        runId,
        name: artifact.name,
        queue,
        streamFactory: () => createWriteStream(target),
      });
      io.stderr.write(`tcw: artifact ${artifact.name} → ${target}\n`);
    }
    token = page.continuationToken;
  } while (token);
}
