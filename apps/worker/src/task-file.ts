import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import taskcluster from 'taskcluster-client';
import { parse as parseYaml } from 'yaml';

export interface TaskFile {
  taskId: string;
  definition: Record<string, unknown>;
}

export class TaskFileError extends Error {}

/**
 * Reads a task definition (YAML or JSON). `taskId`, `created`, `deadline` (+1 day), `expires` (+1 year after the
 * deadline, the queue's default), `taskQueueId` (the given default) and `metadata` may be left out.
 */
export async function readTaskFile(path: string, defaults: { taskQueueId: string }): Promise<TaskFile> {
  let raw: unknown;
  try {
    raw = parseYaml(await readFile(path, 'utf8'));
  } catch (error) {
    throw new TaskFileError(`cannot read task file ${path}: ${(error as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new TaskFileError(`${path} must hold a task definition (a mapping)`);
  }
  const { taskId: givenId, ...task } = raw as Record<string, unknown>;
  const taskId = typeof givenId === 'string' ? givenId : taskcluster.slugid();
  const now = new Date();
  const deadline =
    typeof task.deadline === 'string' ? new Date(task.deadline) : taskcluster.fromNow('1 day', now);
  const definition: Record<string, unknown> = {
    ...task,
    created: task.created ?? now.toJSON(),
    deadline: deadline.toJSON(),
    expires: task.expires ?? taskcluster.fromNow('1 year', deadline).toJSON(),
    payload: task.payload ?? {},
    metadata: {
      name: basename(path),
      description: `submitted with tcw submit from ${basename(path)}`,
      owner: process.env.USER ? `${process.env.USER}@localhost` : 'tcw@localhost',
      source: `http://localhost/tcw/${encodeURIComponent(basename(path))}`,
      ...((task.metadata as object | undefined) ?? {}),
    },
  };
  if (!definition.taskQueueId && !definition.provisionerId) definition.taskQueueId = defaults.taskQueueId;
  return { taskId, definition };
}
