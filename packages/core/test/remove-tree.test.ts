// removeTree: rm -rf on a helper thread. Real files, a real child process for the exit check.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { removeTree } from '../src/util/remove-tree.js';

describe('removeTree', () => {
  const roots: string[] = [];
  afterAll(async () => {
    for (const r of roots) await rm(r, { recursive: true, force: true });
  });
  const tree = async (files = 20) => {
    const root = await mkdtemp(join(tmpdir(), 'remove-tree-'));
    roots.push(root);
    await mkdir(join(root, 'a', 'b', 'c'), { recursive: true });
    for (let i = 0; i < files; i++) await writeFile(join(root, 'a', i % 2 ? 'b' : 'b/c', `f${i}`), `${i}`);
    return root;
  };

  it('removes a folder with everything in it, and does not follow symlinks out of it', async () => {
    const outside = await tree(2);
    const root = await tree();
    await symlink(outside, join(root, 'a', 'link-out'));
    await removeTree(root);
    expect(existsSync(root)).toBe(false);
    expect(existsSync(join(outside, 'a', 'b', 'f1'))).toBe(true);
  });

  it('is fine with a missing path, and with many removals at once', async () => {
    await removeTree(join(tmpdir(), 'remove-tree-does-not-exist'));
    const many = await Promise.all(Array.from({ length: 20 }, () => tree(5)));
    await Promise.all(many.map((r) => removeTree(r)));
    expect(many.filter((r) => existsSync(r))).toEqual([]);
  });

  it('does not keep a process alive once its removals are done', async () => {
    const root = await tree();
    const src = fileURLToPath(new URL('../src/util/remove-tree.ts', import.meta.url));
    const script = `import { removeTree } from ${JSON.stringify(src)}; await removeTree(${JSON.stringify(root)}); console.log('removed');`;
    const child = spawn(
      process.execPath,
      ['--experimental-strip-types', '--input-type=module', '-e', script],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    expect(out.trim()).toBe('removed');
    expect(existsSync(root)).toBe(false);
  });
});
