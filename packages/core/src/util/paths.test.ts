import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveInside, walkFiles } from './paths.js';

describe('paths', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'paths-'));
    await mkdir(join(root, 'dir/sub'), { recursive: true });
    await writeFile(join(root, 'dir/a.txt'), 'a');
    await writeFile(join(root, 'dir/sub/b.txt'), 'b');
    await symlink('/etc/passwd', join(root, 'dir/evil'));
    await symlink(join(root, 'dir/a.txt'), join(root, 'dir/good'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('refuses .., absolute paths outside and escaping symlinks', async () => {
    expect(await resolveInside(root, 'dir/a.txt')).toMatchObject({ ok: true });
    expect(await resolveInside(root, '../etc/passwd')).toMatchObject({ ok: false, problem: 'escapes' });
    expect(await resolveInside(root, '/etc/passwd')).toMatchObject({ ok: false, problem: 'escapes' });
    expect(await resolveInside(root, 'dir/evil')).toMatchObject({ ok: false, problem: 'symlink-escapes' });
    expect(await resolveInside(root, 'dir/nope')).toMatchObject({ ok: false, problem: 'missing' });
    expect(await resolveInside(root, 'dir/good')).toMatchObject({ ok: true });
  });

  it('walks files, following only symlinks that stay inside', async () => {
    const seen: string[] = [];
    for await (const entry of walkFiles(root, join(root, 'dir'))) {
      seen.push(entry.kind === 'file' ? `file:${entry.relPath}` : `refused:${entry.relPath}`);
    }
    expect(seen).toEqual(['file:a.txt', 'refused:evil', 'file:good', 'file:sub/b.txt']);
  });

  it('walks from a folder reached through a symlink, from the root itself, and through a symlinked root', async () => {
    const collect = async (r: string, d: string) => {
      const out: string[] = [];
      for await (const entry of walkFiles(r, d)) {
        out.push(entry.kind === 'file' ? `${entry.relPath}@${entry.path}` : `refused:${entry.relPath}`);
      }
      return out;
    };
    // a symlink inside the root to a folder inside it: the files are reported at their real paths
    await symlink(join(root, 'dir/sub'), join(root, 'link-to-sub'));
    expect(await collect(root, join(root, 'link-to-sub'))).toEqual([`b.txt@${join(root, 'dir/sub/b.txt')}`]);
    // from the root itself (the cycle through link-to-sub is walked once)
    expect((await collect(root, root)).filter((e) => !e.startsWith('refused'))).toEqual([
      `dir/a.txt@${join(root, 'dir/a.txt')}`,
      `dir/good@${join(root, 'dir/a.txt')}`,
      `dir/sub/b.txt@${join(root, 'dir/sub/b.txt')}`,
    ]);
    // a root given through a symlink: paths are the real ones, and escaping symlinks are still refused
    const alias = `${root}-alias`;
    await symlink(root, alias);
    try {
      expect(await collect(alias, join(alias, 'dir'))).toEqual([
        `a.txt@${join(root, 'dir/a.txt')}`,
        'refused:evil',
        `good@${join(root, 'dir/a.txt')}`,
        `sub/b.txt@${join(root, 'dir/sub/b.txt')}`,
      ]);
    } finally {
      await rm(alias, { force: true });
    }
  });
});
