import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import type { WorkerIdentity } from '@tcw/core';
import type { WorkerConfig } from './config/load.js';

/** `$XDG_STATE_HOME/tcw` or `~/.local/state/tcw`. */
export function stateHome(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'tcw');
}

/** The task queue of a worker that names none. */
export const DEFAULT_TASK_QUEUE_ID = 'tcw/local';

/** Port of the embedded local queue unless configured (a fixed one, so submitters can find it). */
export const DEFAULT_LOCAL_QUEUE_PORT = 60401;

export function identityOf(config: WorkerConfig): WorkerIdentity {
  const w = config.worker ?? {};
  const host = hostname()
    .replace(/[^a-zA-Z0-9-_]/g, '-')
    .slice(0, 38);
  return {
    taskQueueId:
      w.taskQueueId ?? (w.provisionerId ? `${w.provisionerId}/${w.workerType}` : DEFAULT_TASK_QUEUE_ID),
    workerGroup: w.workerGroup ?? 'local',
    workerId: w.workerId ?? (host || 'worker'),
  };
}

export function workDirOf(config: WorkerConfig, env: NodeJS.ProcessEnv = process.env): string {
  return config.worker?.workDir ?? join(stateHome(env), 'worker');
}

export function localQueueStateDirOf(config: WorkerConfig, env: NodeJS.ProcessEnv = process.env): string {
  return config.localQueue?.stateDir ?? join(stateHome(env), 'local-queue');
}

/** Shell `export` lines for Taskcluster tools. */
export function exportLines(rootUrl: string, credentials: { clientId: string; accessToken: string }): string {
  const q = (v: string) => `'${v.replaceAll("'", `'\\''`)}'`;
  return [
    `export TASKCLUSTER_ROOT_URL=${q(rootUrl)}`,
    `export TASKCLUSTER_CLIENT_ID=${q(credentials.clientId)}`,
    `export TASKCLUSTER_ACCESS_TOKEN=${q(credentials.accessToken)}`,
    '',
  ].join('\n');
}
