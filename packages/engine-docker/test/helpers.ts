import { execFileSync } from 'node:child_process';
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
