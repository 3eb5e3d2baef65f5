// removeTree: rm -rf on a helper thread. Real files, real child processes (the exit check; a user without root
// privileges for read-only folders). The one wrapped fs call (rmdirSync) still calls the real one: it only adds a
// file at the right moment, a race no real process could hit on cue.
import { spawn, spawnSync } from 'node:child_process';
import * as realFs from 'node:fs';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { removeAllSync, removeTree } from '../src/util/remove-tree.js';
import { tsScriptArgs } from './ts-script.js';

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

  it('removes a symlink given as the path itself, not what it points to; and a single file', async () => {
    const target = await tree(2);
    const root = await tree(0);
    await symlink(target, join(root, 'link'));
    await removeTree(join(root, 'link'));
    expect(existsSync(join(root, 'link'))).toBe(false);
    expect(existsSync(join(target, 'a', 'b', 'f1'))).toBe(true);
    await removeTree(join(target, 'a', 'b', 'f1'));
    expect(existsSync(join(target, 'a', 'b', 'f1'))).toBe(false);
    expect(existsSync(join(target, 'a', 'b'))).toBe(true);
  });

  it('removes folders a task made read-only or unreadable (as a user without root privileges)', async () => {
    // root ignores permissions: the removal runs in a real child process as `nobody` (setpriv, util-linux)
    const root = await mkdtemp(join(tmpdir(), 'remove-tree-ro-'));
    roots.push(root);
    await chmod(root, 0o777);
    const src = fileURLToPath(new URL('../src/util/remove-tree.ts', import.meta.url));
    const script = `
      import * as fs from 'node:fs';
      import { removeAllSync } from ${JSON.stringify(src)};
      const t = ${JSON.stringify(join(root, 'task'))};
      fs.mkdirSync(t + '/mod/pkg@v1/sub', { recursive: true });
      fs.writeFileSync(t + '/mod/pkg@v1/go.mod', 'module x');
      fs.writeFileSync(t + '/mod/pkg@v1/sub/a.go', 'package a');
      fs.mkdirSync(t + '/secret');
      fs.writeFileSync(t + '/secret/s', 's');
      for (const d of ['/mod/pkg@v1/sub', '/mod/pkg@v1', '/mod']) fs.chmodSync(t + d, 0o555);
      fs.chmodSync(t + '/secret', 0o000);
      let refused = false;
      try { fs.rmSync(t, { recursive: true, force: true }); } catch { refused = true; }
      removeAllSync(fs, t);
      console.log(JSON.stringify({ refused, gone: !fs.existsSync(t) }));`;
    const run = spawnSync(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, ...tsScriptArgs(script)],
      { encoding: 'utf8' },
    );
    expect(run.stderr).toBe('');
    // fs.rmSync gives up on the read-only folders; removeAllSync removes everything
    expect(JSON.parse(run.stdout)).toEqual({ refused: true, gone: true });
  });

  it('removeAllSync walks a folder that gained entries again, and leaves other trees alone', () => {
    const base = join(tmpdir(), `remove-tree-sync-${process.pid}`);
    mkdirSync(join(base, 'x', 'y'), { recursive: true });
    writeFileSync(join(base, 'x', 'y', 'f'), 'f');
    roots.push(base);
    // an rmdir that meets ENOTEMPTY once (a file appeared meanwhile): the folder is read again
    let raced = false;
    const ops: Parameters<typeof removeAllSync>[0] = {
      ...realFs,
      rmdirSync: (p: realFs.PathLike) => {
        if (!raced && p === join(base, 'x')) {
          raced = true;
          writeFileSync(join(base, 'x', 'late'), 'late');
        }
        realFs.rmdirSync(p);
      },
    };
    removeAllSync(ops, base);
    expect(raced).toBe(true);
    expect(existsSync(base)).toBe(false);
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
    const child = spawn(process.execPath, tsScriptArgs(script), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    expect(out.trim()).toBe('removed');
    expect(existsSync(root)).toBe(false);
  });
});
