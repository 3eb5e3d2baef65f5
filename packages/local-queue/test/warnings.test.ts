// suppressSqliteExperimentalWarning in a real Node process: only node:sqlite's warning is filtered.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const SCRIPT = fileURLToPath(new URL('./fixtures/warnings.mjs', import.meta.url));
const run = async (arg: string) => (await promisify(execFile)(process.execPath, [SCRIPT, arg])).stderr;

describe('suppressSqliteExperimentalWarning', () => {
  it('filters the SQLite ExperimentalWarning and lets other warnings through', async () => {
    const filtered = await run('suppress');
    expect(filtered).toContain('an unrelated experimental feature');
    expect(filtered).not.toMatch(/SQLite/i);
  });

  it('is the only thing that hides it: without the call Node prints the SQLite warning', async () => {
    const unfiltered = await run('keep');
    expect(unfiltered).toMatch(/SQLite is an experimental feature/);
  });
});
