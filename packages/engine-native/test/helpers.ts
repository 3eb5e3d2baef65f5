import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EngineV1, silentLogger } from '@tcw/core';
import { createNativeEngine, type NativeEngineOptions } from '../src/index.js';

/** An engine, initialised with a fresh work dir; `cleanup()` disposes it and removes the work dir. */
export async function startEngine(
  options: NativeEngineOptions = {},
): Promise<{ engine: EngineV1; workDir: string; cleanup(): Promise<void> }> {
  const workDir = await mkdtemp(join(tmpdir(), 'tcw-native-test-'));
  const engine = createNativeEngine(options);
  try {
    await engine.init!({
      logger: silentLogger,
      worker: { taskQueueId: 'tcw-test/native', workerGroup: 'g', workerId: 'w' },
      workDir,
    });
  } catch (error) {
    await engine.dispose?.();
    await rm(workDir, { recursive: true, force: true });
    throw error;
  }
  return {
    engine,
    workDir,
    async cleanup() {
      await engine.dispose?.();
      await rm(workDir, { recursive: true, force: true });
    },
  };
}

/** Live processes whose command line or environment contains `marker`. */
export async function processesWith(marker: string): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
      const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8');
      const env = await readFile(`/proc/${name}/environ`, 'utf8').catch(() => '');
      if (cmd.includes(marker) || env.includes(marker)) found.push(Number(name));
    } catch {
      // gone
    }
  }
  return found;
}

/** Whether a process exists and is not a zombie (PID 1 here may be slow to reap orphans). */
export async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export async function until(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

/** Whether a user exists (in /etc/passwd). */
export async function userExists(name: string): Promise<boolean> {
  return (await readFile('/etc/passwd', 'utf8')).split('\n').some((l) => l.startsWith(`${name}:`));
}

export const isRootLinux = process.platform === 'linux' && process.getuid?.() === 0;
