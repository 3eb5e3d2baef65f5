#!/usr/bin/env node
import './threadpool.js';
import { defaultIo, EXIT } from './commands/io.js';
import { runConfigCheck, runEnv, runQueue, runSchema, runVersion } from './commands/misc.js';
import { runRun } from './commands/run.js';
import { runStart } from './commands/start.js';
import { runSubmit } from './commands/submit.js';

const HELP = `tcw — a plugin-based Taskcluster worker

usage: tcw <command> [options]

  start [--config FILE]                 run the worker (embeds the local queue when the config has no rootUrl)
  queue [--port N] [--state-dir DIR] [--config FILE]
                                        serve the local queue on its own
  env [--config FILE]                   print the export lines of the embedded queue of a running worker
  submit TASK_FILE [--follow]           create a task (TASKCLUSTER_* from the environment); follow its log
  run TASK_FILE [--config FILE] [--out DIR]
                                        run one task on this machine, no deployment needed
  schema [--config FILE]                print the composed payload JSON schema
  config check FILE                     validate a config file
  version                               print versions

Exit codes: 0 ok / completed; 1 task failed; 2 task exception; 64 bad usage or config; 69 the worker stopped
after a fatal internal error; 70 the worker could not start (or tcw itself failed); 75 forced exit.
`;

async function main(argv: string[]): Promise<number> {
  const io = defaultIo();
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      return runStart(rest, io);
    case 'queue':
      return runQueue(rest, io);
    case 'env':
      return runEnv(rest, io);
    case 'submit':
      return runSubmit(rest, io);
    case 'run':
      return runRun(rest, io);
    case 'schema':
      return runSchema(rest, io);
    case 'config':
      return runConfigCheck(rest, io);
    case 'version':
    case '--version':
      return runVersion(io);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stdout.write(HELP);
      return EXIT.ok;
    default:
      io.stderr.write(`tcw: unknown command ${command}\n\n${HELP}`);
      return EXIT.usage;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // the embedded queue and any long-poll are closed by now; do not wait for stray timers
    setTimeout(() => process.exit(code), 100).unref();
  },
  (error) => {
    process.stderr.write(`tcw: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(EXIT.cannotStart);
  },
);
