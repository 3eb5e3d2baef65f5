import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  ConfigError,
  IncompatibleExtensionError,
  type Logger,
  PayloadKeyConflictError,
  TaskclusterQueue,
  TcwError,
  Worker,
  type WorkerExit,
  type WorkerOptions,
} from '@tcw/core';
import {
  type LocalQueue,
  startLocalQueue,
  startLocalQueueThread,
  suppressSqliteExperimentalWarning,
} from '@tcw/local-queue';
import { compose } from '../compose.js';
import { type LoadedConfig, loadConfig } from '../config/load.js';
import {
  DEFAULT_LOCAL_QUEUE_PORT,
  exportLines,
  identityOf,
  localQueueStateDirOf,
  workDirOf,
} from '../defaults.js';
import { createLogger, messageFirstLogger } from '../logger.js';
import { findConfig } from './find-config.js';
import { type CommandIo, EXIT } from './io.js';

export interface StartedWorker {
  worker: Worker;
  localQueue: LocalQueue | undefined;
  rootUrl: string;
  credentials: { clientId: string; accessToken: string; certificate?: string };
  logger: Logger;
  loaded: LoadedConfig;
  /** Resolves with the worker's exit when its loop ends; closes the embedded queue. */
  done: Promise<WorkerExit>;
}

export interface StartOptions {
  /** Overrides applied after loading (tcw run uses a throwaway queue). */
  localQueueStateDir?: string;
  localQueuePort?: number;
  capacity?: number;
  logger?: Logger;
  io: CommandIo;
  /** Called once the worker has started (engine and plugins initialised), just before its loop claims anything. */
  onStarted?: (worker: Worker, logger: Logger) => void;
}

function seconds(value: number | undefined, fallback: number): number {
  return Math.round((value ?? fallback) * 1000);
}

/** Loads everything, starts the embedded queue when there is no rootUrl, and starts the worker's loop. */
export async function startWorker(loaded: LoadedConfig, options: StartOptions): Promise<StartedWorker> {
  const { config } = loaded;
  const logger = options.logger ?? createLogger(config.logging ?? {});
  const composition = await compose(loaded);
  const identity = identityOf(config);
  const workDir = workDirOf(config, options.io.env);
  await mkdir(workDir, { recursive: true });

  let localQueue: LocalQueue | undefined;
  let rootUrl: string;
  let credentials: StartedWorker['credentials'];
  if (config.rootUrl) {
    rootUrl = config.rootUrl;
    const c = config.credentials!;
    credentials = { clientId: c.clientId, accessToken: c.accessToken };
    if (c.certificate)
      credentials.certificate =
        typeof c.certificate === 'string' ? c.certificate : JSON.stringify(c.certificate);
  } else {
    suppressSqliteExperimentalWarning();
    const stateDir = options.localQueueStateDir ?? localQueueStateDirOf(config, options.io.env);
    // localQueue.thread: its commits, fsyncs and HTTP serving then run on another thread (see docs/reference/config.md)
    const start = config.localQueue?.thread === true ? startLocalQueueThread : startLocalQueue;
    localQueue = await start({
      stateDir,
      host: config.localQueue?.host ?? '127.0.0.1',
      port: options.localQueuePort ?? config.localQueue?.port ?? DEFAULT_LOCAL_QUEUE_PORT,
      ...(config.localQueue?.publicUrl ? { publicUrl: config.localQueue.publicUrl } : {}),
      ...(config.localQueue?.config ? { config: config.localQueue.config as never } : {}),
      logger: messageFirstLogger(logger.child({ component: 'local-queue' })),
    });
    rootUrl = localQueue.rootUrl;
    credentials = localQueue.rootCredentials;
    await writeFile(join(workDir, 'local-queue.env'), exportLines(rootUrl, credentials), { mode: 0o600 });
  }

  const w = config.worker ?? {};
  const workerOptions: WorkerOptions = {
    queue: new TaskclusterQueue({
      rootUrl,
      credentials,
      // the embedded queue is in this process: call it directly (same credential and scope checks, no HTTP)
      ...(localQueue && config.localQueue?.inProcess !== false
        ? { clientFactory: inProcessClients(localQueue) }
        : {}),
    }),
    engine: composition.engine,
    plugins: composition.plugins,
    identity,
    // masked in every task log: the worker's own token, and what came from the secrets service
    logSecrets: [credentials.accessToken, ...loaded.secretValues],
    capacity: options.capacity ?? w.capacity ?? 1,
    workDir,
    logger,
    shutdownGraceMs: seconds(w.shutdownGracePeriod, 300),
    abortGraceMs: seconds(w.abortGracePeriod, 10),
    cancelPollMs: seconds(w.cancelPollInterval, config.rootUrl ? 5 : 1),
    hookTimeoutMs: seconds(w.hookTimeout, 1800),
    uploadConcurrency: w.uploadConcurrency ?? 8,
    minFreeDiskBytes: Math.round((w.minFreeSpace ?? 64) * 1024 * 1024),
    maxLogBytes: Math.round((w.maxLogSize ?? 1024) * 1024 * 1024),
  };
  const worker = new Worker(workerOptions);
  localQueue?.events.on('fatal', (error: Error) => {
    logger.error({ err: error }, 'the embedded queue stopped; stopping the worker');
    worker.stopNow('the embedded queue stopped', { fatal: true });
  });
  try {
    await worker.start();
  } catch (error) {
    await localQueue?.close();
    throw error;
  }
  options.onStarted?.(worker, logger);
  logger.info(
    {
      rootUrl,
      taskQueueId: identity.taskQueueId,
      workerId: identity.workerId,
      capacity: worker.capacity,
      engine: composition.engine.name,
      plugins: composition.pluginNames,
    },
    'worker started',
  );
  const done = worker.run().finally(async () => {
    await localQueue?.close();
  });
  return { worker, localQueue, rootUrl, credentials, logger, loaded, done };
}

function inProcessClients(localQueue: LocalQueue) {
  return (
    kind: 'Queue' | 'Object',
    credentials: { clientId: string; accessToken: string; certificate?: string },
  ) => localQueue.client(kind === 'Queue' ? 'queue' : 'object', credentials);
}

/** Maps a startup error to an exit code and a message for the operator. */
export function startupFailure(error: unknown): { code: number; message: string } {
  if (error instanceof ConfigError || TcwError.hasCode(error, ConfigError.code)) {
    return {
      code: EXIT.usage,
      message: `invalid configuration:\n${(error as Error).message.replace(/^/gm, '  ')}`,
    };
  }
  if (error instanceof PayloadKeyConflictError || error instanceof IncompatibleExtensionError) {
    return { code: EXIT.usage, message: (error as Error).message };
  }
  return { code: EXIT.cannotStart, message: `cannot start the worker: ${(error as Error).message}` };
}

const USAGE = `usage: tcw start [--config FILE]

Runs the worker. Without rootUrl in the config, it embeds the local queue and prints export lines for
TASKCLUSTER_ROOT_URL, TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN on stdout.
SIGTERM or SIGINT: stop gracefully (no more claims; running tasks may finish within worker.shutdownGracePeriod).
A second SIGTERM/SIGINT: stop now (tasks are aborted and resolved worker-shutdown, so the queue retries them).
`;

/** `tcw start`. */
export async function runStart(argv: string[], io: CommandIo): Promise<number> {
  let args: { config?: string | undefined; help?: boolean | undefined };
  try {
    ({ values: args } = parseArgs({
      args: argv,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (error) {
    io.stderr.write(`${(error as Error).message}\n${USAGE}`);
    return EXIT.usage;
  }
  if (args.help) {
    io.stdout.write(USAGE);
    return EXIT.ok;
  }
  // the handlers go in first: a signal while the worker starts (engine init may take a while) must not kill it
  // half-way (its work folder, cgroups, embedded queue): it stops as soon as it has started, claiming nothing
  let signals = 0;
  let firstSignal: NodeJS.Signals | undefined;
  let forceTimer: NodeJS.Timeout | undefined;
  let running: { worker: Worker; logger: Logger } | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (!running) {
      firstSignal ??= signal;
      if (signals === 1) {
        io.stderr.write(
          `tcw: received ${signal} while starting; stopping once started (send it again to exit now)\n`,
        );
      } else {
        io.stderr.write(`tcw: received ${signal} again while starting; exiting now\n`);
        process.exit(EXIT.forcedExit);
      }
      return;
    }
    const { worker, logger } = running;
    if (signals === 1) {
      logger.info({ signal }, 'stopping gracefully (send it again to stop now)');
      worker.stopGracefully(`received ${signal}`);
    } else if (signals === 2) {
      logger.warn({ signal }, 'stopping now');
      worker.stopNow(`received ${signal} twice`);
    } else {
      logger.error({ signal }, 'exiting at once');
      process.exit(EXIT.forcedExit);
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  let loaded: LoadedConfig | undefined;
  const onStarted = (worker: Worker, logger: Logger) => {
    running = { worker, logger };
    worker.events.on('stopping', ({ mode }) => {
      if (mode !== 'now' || forceTimer) return;
      const limit = (loaded?.config.worker?.abortGracePeriod ?? 10) * 1000 + 60_000;
      forceTimer = setTimeout(() => {
        logger.error({ afterMs: limit }, 'the worker did not stop in time; exiting');
        process.exit(EXIT.forcedExit);
      }, limit);
      forceTimer.unref();
    });
    if (firstSignal) worker.stopGracefully(`received ${firstSignal} while starting`);
  };
  let started: StartedWorker;
  try {
    loaded = await loadConfig(await findConfig(args.config, io.env), { env: io.env });
    started = await startWorker(loaded, { io, onStarted });
  } catch (error) {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    const failure = startupFailure(error);
    io.stderr.write(`tcw: ${failure.message}\n`);
    return failure.code;
  }
  const { logger } = started;
  if (started.localQueue) io.stdout.write(exportLines(started.rootUrl, started.credentials));
  const exit = await started.done;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  clearTimeout(forceTimer);
  logger.info({ ...exit }, 'worker stopped');
  return exit.fatal ? EXIT.fatal : EXIT.ok;
}
