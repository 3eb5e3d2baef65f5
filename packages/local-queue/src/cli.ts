import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type LocalQueueConfig, startLocalQueue } from './local-queue.js';
import { suppressSqliteExperimentalWarning } from './warnings.js';

const USAGE = 'usage: tcw queue [--port N] [--state-dir DIR] [--config FILE] [--host H] [--public-url URL]\n';

function shellQuote(value: string): string {
  return /^[A-Za-z0-9_./:@%+=-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * `tcw queue`: serves the local queue until SIGTERM or SIGINT. Prints `export TASKCLUSTER_…=…` lines for the
 * root client on stdout (so `eval "$(tcw queue …)"`-style setups work) and returns the exit code.
 */
export async function runQueueCommand(
  argv: string[],
  io: {
    stdout: NodeJS.WritableStream;
    stderr: NodeJS.WritableStream;
    /** Parses the `--config` file's text (default JSON.parse; the tcw app passes a YAML parser). */
    parseConfig?: (text: string) => unknown;
  },
): Promise<number> {
  let port = 0;
  let host = '127.0.0.1';
  let publicUrl: string | undefined;
  let stateDir = process.env.TCW_QUEUE_STATE_DIR ?? join(homedir(), '.local', 'state', 'tcw', 'queue');
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes('=')
      ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
      : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new Error(`${flag} needs a value`);
      return v;
    };
    try {
      switch (flag) {
        case '--port': {
          const v = value();
          if (!/^\d+$/.test(v) || Number(v) > 65535)
            throw new Error(`--port must be 0..65535, got ${JSON.stringify(v)}`);
          port = Number(v);
          break;
        }
        case '--host':
          host = value();
          break;
        case '--public-url':
          publicUrl = value();
          break;
        case '--state-dir':
          stateDir = value();
          break;
        case '--config':
          configFile = value();
          break;
        case '-h':
        case '--help':
          io.stdout.write(USAGE);
          return 0;
        default:
          throw new Error(`unknown argument ${JSON.stringify(arg)}`);
      }
    } catch (err) {
      io.stderr.write(`tcw queue: ${(err as Error).message}\n${USAGE}`);
      return 2;
    }
  }
  let config: LocalQueueConfig = {};
  if (configFile !== undefined) {
    try {
      config = (io.parseConfig ?? JSON.parse)(readFileSync(configFile, 'utf8')) as LocalQueueConfig;
      if (typeof config !== 'object' || config === null || Array.isArray(config)) {
        throw new Error('the top level must be an object');
      }
    } catch (err) {
      io.stderr.write(`tcw queue: cannot read --config ${configFile}: ${(err as Error).message}\n`);
      return 2;
    }
  }
  const log =
    (level: string) =>
    (...args: unknown[]) => {
      if (level === 'debug') return;
      io.stderr.write(
        `[queue] ${level}: ${args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ')}\n`,
      );
    };
  suppressSqliteExperimentalWarning();
  let queue: Awaited<ReturnType<typeof startLocalQueue>>;
  try {
    queue = await startLocalQueue({
      stateDir,
      host,
      port,
      ...(publicUrl !== undefined ? { publicUrl } : {}),
      config,
      logger: { info: log('info'), warn: log('warn'), error: log('error'), debug: log('debug') },
    });
  } catch (err) {
    io.stderr.write(`tcw queue: ${(err as Error).message}\n`);
    return 1;
  }
  io.stdout.write(
    `export TASKCLUSTER_ROOT_URL=${shellQuote(queue.rootUrl)}\n` +
      `export TASKCLUSTER_CLIENT_ID=${shellQuote(queue.rootCredentials.clientId)}\n` +
      `export TASKCLUSTER_ACCESS_TOKEN=${shellQuote(queue.rootCredentials.accessToken)}\n`,
  );
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (s: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve(s);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  io.stderr.write(`[queue] info: ${signal}: shutting down\n`);
  await queue.close();
  return 0;
}
