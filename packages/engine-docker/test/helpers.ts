import { execFileSync } from 'node:child_process';
import type { TaskInfo } from '@tcw/core';
import { createDockerEngine, type DockerEngine, type DockerEngineOptions } from '../src/index.js';

/** Built by scripts/build-test-images.sh (`docker import` of Debian's busybox-static; nothing is pulled). */
export const IMAGE = process.env.TCW_TEST_IMAGE ?? 'tcw-test/busybox:latest';

export function engine(options: DockerEngineOptions = {}): DockerEngine {
  return createDockerEngine(options);
}

export function sh(script: string, ...args: string[]): Record<string, unknown> {
  return { image: IMAGE, command: ['sh', '-c', script, 'sh', ...args] };
}

/** The docker CLI, for checks from outside the engine. */
export function dockerCli(...args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8' }).trim();
}

export function containersOfTask(taskId: string): string[] {
  const out = dockerCli('ps', '-aq', '--filter', `label=tcw.task-id=${taskId}`);
  return out ? out.split('\n') : [];
}

/** A TaskInfo for tests that drive the engine directly (no queue). */
export function taskInfo(taskId: string, scopes: string[] = [], rootUrl = 'http://127.0.0.1:1'): TaskInfo {
  const now = new Date();
  return {
    taskId,
    runId: 0,
    rootUrl,
    worker: { taskQueueId: 'tcw-test/fake', workerGroup: 'g', workerId: 'w' },
    task: {
      taskQueueId: 'tcw-test/fake',
      provisionerId: 'tcw-test',
      workerType: 'fake',
      schedulerId: '-',
      projectId: 'none',
      taskGroupId: taskId,
      dependencies: [],
      requires: 'all-completed',
      routes: [],
      priority: 'lowest',
      retries: 0,
      created: now.toISOString(),
      deadline: new Date(now.getTime() + 3_600_000).toISOString(),
      expires: new Date(now.getTime() + 86_400_000).toISOString(),
      scopes,
      payload: {},
      metadata: { name: 't', description: 't', owner: 't@example.com', source: 'http://example.com' },
      tags: {},
      extra: {},
    },
  };
}
