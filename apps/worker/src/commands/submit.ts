import { parseArgs } from 'node:util';
import taskcluster from 'taskcluster-client';
import { DEFAULT_TASK_QUEUE_ID } from '../defaults.js';
import { exitCodeFor, followTask } from '../follow.js';
import { readTaskFile, TaskFileError } from '../task-file.js';
import { type CommandIo, EXIT } from './io.js';

const USAGE = `usage: tcw submit TASK_FILE [--follow]

Creates the task in TASK_FILE (YAML or JSON; taskId, created, deadline, expires, metadata and taskQueueId may be
left out) and prints its taskId. Reads TASKCLUSTER_ROOT_URL, TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN
(and TASKCLUSTER_CERTIFICATE) like the other Taskcluster tools. With --follow, streams the task's log until it
resolves and exits 0 (completed), 1 (failed) or 2 (exception).
`;

/** `tcw submit`. */
export async function runSubmit(argv: string[], io: CommandIo): Promise<number> {
  let parsed: { values: { follow?: boolean | undefined; help?: boolean | undefined }; positionals: string[] };
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { follow: { type: 'boolean', short: 'f' }, help: { type: 'boolean', short: 'h' } },
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
  const rootUrl = io.env.TASKCLUSTER_ROOT_URL;
  if (!rootUrl) {
    io.stderr.write(
      'tcw submit: TASKCLUSTER_ROOT_URL is not set (eval "$(./tcw env)" for the embedded queue)\n',
    );
    return EXIT.usage;
  }
  const credentials = io.env.TASKCLUSTER_CLIENT_ID
    ? {
        clientId: io.env.TASKCLUSTER_CLIENT_ID,
        accessToken: io.env.TASKCLUSTER_ACCESS_TOKEN ?? '',
        ...(io.env.TASKCLUSTER_CERTIFICATE ? { certificate: io.env.TASKCLUSTER_CERTIFICATE } : {}),
      }
    : undefined;
  const queue = new taskcluster.Queue({ rootUrl, ...(credentials ? { credentials } : {}) });
  let taskId: string;
  try {
    const task = await readTaskFile(file, { taskQueueId: io.env.TCW_TASK_QUEUE_ID ?? DEFAULT_TASK_QUEUE_ID });
    taskId = task.taskId;
    await queue.createTask(taskId, task.definition);
  } catch (error) {
    if (error instanceof TaskFileError) {
      io.stderr.write(`tcw submit: ${error.message}\n`);
      return EXIT.usage;
    }
    const e = error as { statusCode?: number; message: string };
    io.stderr.write(
      `tcw submit: createTask failed${e.statusCode ? ` (${e.statusCode})` : ''}: ${e.message}\n`,
    );
    // refused (4xx: the definition, the scopes) is the caller's to fix; unreachable or 5xx is worth a retry
    return e.statusCode !== undefined && e.statusCode < 500 ? EXIT.usage : EXIT.unavailable;
  }
  io.stdout.write(`${taskId}\n`);
  if (!parsed.values.follow) return EXIT.ok;
  const result = await followTask({ queue, taskId, out: io.stdout });
  io.stderr.write(
    `tcw: task ${taskId} run ${result.runId}: ${result.state}${result.state === 'exception' ? ` (${result.reasonResolved})` : ''}\n`,
  );
  return exitCodeFor(result.state);
}
