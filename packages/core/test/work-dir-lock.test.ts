// One worker per work folder: real child processes hold the lock, one is SIGKILLed to leave a stale pid file.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { lockWorkDir } from '../src/util/work-dir-lock.js';
import { tsScriptArgs } from './ts-script.js';

const SRC = fileURLToPath(new URL('../src/util/work-dir-lock.ts', import.meta.url));

/** A process that takes the lock, says so, and waits (or exits at once with `exit`). */
function holder(dir: string, exit = false): Promise<{ child: ChildProcess; gone: Promise<number | null> }> {
  const script = `import { lockWorkDir } from ${JSON.stringify(SRC)};
    lockWorkDir(${JSON.stringify(dir)}); console.log('locked'); ${exit ? '' : 'setInterval(() => {}, 1000);'}`;
  const child = spawn(process.execPath, tsScriptArgs(script), { stdio: ['ignore', 'pipe', 'inherit'] });
  const gone = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      if (String(d).includes('locked')) resolve({ child, gone });
    });
    child.on('exit', (code) => (exit ? resolve({ child, gone }) : reject(new Error(`exited ${code}`))));
  });
}

describe('work folder lock', () => {
  const dirs: string[] = [];
  const fresh = () => {
    const d = mkdtempSync(join(tmpdir(), 'work-dir-lock-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('refuses a second worker of the same process until the first releases', () => {
    const dir = fresh();
    const release = lockWorkDir(dir);
    expect(readFileSync(join(dir, 'worker.pid'), 'utf8').trim()).toBe(String(process.pid));
    expect(() => lockWorkDir(dir)).toThrow(/in use by another worker of this process/);
    release();
    expect(existsSync(join(dir, 'worker.pid'))).toBe(false);
    lockWorkDir(dir)();
  });

  it('refuses while another live process holds it; takes over the pid file of one that was killed', async () => {
    const dir = fresh();
    const { child, gone } = await holder(dir);
    expect(() => lockWorkDir(dir)).toThrow(
      new RegExp(`work folder .* is in use by another worker \\(pid ${child.pid}, see .*worker\\.pid\\)`),
    );
    child.kill('SIGKILL');
    await gone;
    // the killed process could not remove its pid file
    expect(readFileSync(join(dir, 'worker.pid'), 'utf8').trim()).toBe(String(child.pid));
    const release = lockWorkDir(dir);
    expect(readFileSync(join(dir, 'worker.pid'), 'utf8').trim()).toBe(String(process.pid));
    release();
  });

  it('a process that exits gives the folder back by itself', async () => {
    const dir = fresh();
    const { gone } = await holder(dir, true);
    expect(await gone).toBe(0);
    expect(existsSync(join(dir, 'worker.pid'))).toBe(false);
  });
});
