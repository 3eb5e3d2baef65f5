import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CORE_VERSION } from '@tcw/core';
import { runQueueCommand, suppressSqliteExperimentalWarning } from '@tcw/local-queue';
import { parse as parseYaml } from 'yaml';
import { compose } from '../compose.js';
import { loadConfig } from '../config/load.js';
import { workDirOf } from '../defaults.js';
import { VERSION } from '../version.js';
import { findConfig } from './find-config.js';
import { type CommandIo, EXIT } from './io.js';
import { startupFailure } from './start.js';

function configArg(argv: string[]): { config: string | undefined; positionals: string[] } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' } },
  });
  return { config: values.config, positionals };
}

/** `tcw schema [--config FILE]`: the composed payload JSON schema. */
export async function runSchema(argv: string[], io: CommandIo): Promise<number> {
  try {
    const { config } = configArg(argv);
    const composition = await compose(await loadConfig(await findConfig(config, io.env), { env: io.env }));
    io.stdout.write(`${JSON.stringify(composition.schema.schema, null, 2)}\n`);
    return EXIT.ok;
  } catch (error) {
    const failure = startupFailure(error);
    io.stderr.write(`tcw schema: ${failure.message}\n`);
    return failure.code;
  }
}

/** `tcw config check FILE`: validates a config, naming every bad key by its path. */
export async function runConfigCheck(argv: string[], io: CommandIo): Promise<number> {
  const [sub, file, ...rest] = argv;
  if (sub !== 'check' || !file || rest.length) {
    io.stderr.write('usage: tcw config check FILE\n');
    return EXIT.usage;
  }
  try {
    const loaded = await loadConfig(file, { env: io.env });
    const composition = await compose(loaded);
    io.stdout.write(
      `${file}: ok (engine ${composition.engine.name}; plugins ${composition.pluginNames.join(', ') || 'none'}; ` +
        `payload keys ${[...composition.schema.owners.keys()].join(', ') || 'none'})\n`,
    );
    return EXIT.ok;
  } catch (error) {
    const failure = startupFailure(error);
    io.stderr.write(`${file}: ${failure.message}\n`);
    return failure.code;
  }
}

/** `tcw env [--config FILE]`: the export lines of the embedded queue a running `tcw start` serves. */
export async function runEnv(argv: string[], io: CommandIo): Promise<number> {
  try {
    const { config } = configArg(argv);
    const loaded = await loadConfig(await findConfig(config, io.env), { env: io.env });
    io.stdout.write(await readFile(join(workDirOf(loaded.config, io.env), 'local-queue.env'), 'utf8'));
    return EXIT.ok;
  } catch (error) {
    io.stderr.write(
      `tcw env: ${(error as Error).message} (is \`tcw start\` running on the embedded queue?)\n`,
    );
    return EXIT.usage;
  }
}

/** `tcw queue …`: the local queue on its own. */
export async function runQueue(argv: string[], io: CommandIo): Promise<number> {
  suppressSqliteExperimentalWarning();
  // YAML or JSON, like the worker's own config
  return runQueueCommand(argv, {
    stdout: io.stdout,
    stderr: io.stderr,
    parseConfig: (text) => parseYaml(text),
  });
}

export function runVersion(io: CommandIo): number {
  io.stdout.write(`tcw ${VERSION} (@tcw/core ${CORE_VERSION}, node ${process.versions.node})\n`);
  return EXIT.ok;
}
