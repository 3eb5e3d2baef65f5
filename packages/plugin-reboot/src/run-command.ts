import { spawn } from 'node:child_process';

export interface CommandResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The last 8 KiB of stdout and stderr, interleaved as they came. */
  output: string;
}

const KEEP = 8 * 1024;

/** Runs argv (no shell) to its end, keeping the tail of its output. Rejects only when it cannot be started. */
export function runCommand(argv: readonly string[]): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const [file, ...args] = argv;
    if (!file) {
      reject(new TypeError('empty command'));
      return;
    }
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-KEEP);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', reject);
    child.once('close', (exitCode, signal) => resolve({ exitCode, signal, output }));
  });
}
