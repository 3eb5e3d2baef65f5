import { lstatSync, readdirSync, realpathSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';

// These helpers make one metadata syscall per path (realpath, readdir, lstat). They call the synchronous forms: on a
// local disk each takes tens of microseconds, while its thread-pool form costs several times that in CPU (thread
// wake-ups) and ~0.3 ms of latency, paid by every task. Long walks still give the event loop a turn regularly.
/** A walk yields to the event loop after this many syscalls. */
const SYSCALLS_PER_TURN = 128;

export type InsideResult =
  | { ok: true; path: string }
  | { ok: false; problem: 'escapes' | 'missing' | 'symlink-escapes'; message: string };

function within(root: string, candidate: string): boolean {
  const rel = relative(root, candidate);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * Resolves `path` (relative to `root`, or absolute) and makes sure it stays inside `root`, following symlinks:
 * `../x`, `/etc/passwd` and a symlink to outside are all refused. Use it for every artifact path a task names.
 */
export async function resolveInside(root: string, path: string): Promise<InsideResult> {
  const realRoot = realpathSync(root);
  const lexical = resolve(realRoot, path);
  if (!within(realRoot, lexical)) {
    return {
      ok: false,
      problem: 'escapes',
      message: `path ${JSON.stringify(path)} leaves the task directory`,
    };
  }
  let real: string;
  try {
    real = realpathSync(lexical);
  } catch {
    return { ok: false, problem: 'missing', message: `path ${JSON.stringify(path)} does not exist` };
  }
  if (!within(realRoot, real)) {
    return {
      ok: false,
      problem: 'symlink-escapes',
      message: `path ${JSON.stringify(path)} is a symlink that leaves the task directory`,
    };
  }
  return { ok: true, path: real };
}

/**
 * `realpathSync(dir)`, cheaper when `dir` is lexically inside `root` (whose real path is known): one lstat per
 * component below `root` instead of one per component from `/` — as long as none of them is a symlink.
 */
function realStart(root: string, realRoot: string, dir: string): string {
  const rel = relative(resolve(root), resolve(dir));
  if (rel === '') return realRoot;
  if (rel.startsWith('..') || isAbsolute(rel)) return realpathSync(dir);
  let current = realRoot;
  for (const part of rel.split(sep)) {
    current = join(current, part);
    if (lstatSync(current).isSymbolicLink()) return realpathSync(dir);
  }
  return current;
}

export type WalkEntry =
  | { kind: 'file'; relPath: string; path: string; size: number }
  | { kind: 'refused'; relPath: string; message: string };

/**
 * Every regular file under `dir` (which must be inside `root`), depth first, in name order. Symlinks are followed
 * only when they stay inside `root`; others are reported as `refused`. `relPath` uses `/` separators.
 */
export async function* walkFiles(root: string, dir: string): AsyncGenerator<WalkEntry> {
  const realRoot = realpathSync(root);
  const seen = new Set<string>();
  let syscalls = 0;
  const turn = async () => {
    if (++syscalls % SYSCALLS_PER_TURN === 0) await nextTurn();
  };
  async function* walk(abs: string, rel: string): AsyncGenerator<WalkEntry> {
    await turn();
    const entries = readdirSync(abs, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      const childAbs = join(abs, entry.name);
      const childRel = rel ? `${rel}/${entry.name}` : entry.name;
      let target = childAbs;
      if (entry.isSymbolicLink()) {
        let real: string;
        try {
          await turn();
          real = realpathSync(childAbs);
        } catch {
          yield { kind: 'refused', relPath: childRel, message: `${childRel} is a dangling symlink` };
          continue;
        }
        if (!within(realRoot, real)) {
          yield {
            kind: 'refused',
            relPath: childRel,
            message: `${childRel} is a symlink that leaves the task directory`,
          };
          continue;
        }
        target = real;
      }
      await turn();
      const info = lstatSync(target);
      if (info.isDirectory()) {
        if (seen.has(target)) continue;
        seen.add(target);
        yield* walk(target, childRel);
      } else if (info.isFile()) {
        yield { kind: 'file', relPath: childRel, path: target, size: info.size };
      }
    }
  }
  const start = realStart(root, realRoot, dir);
  seen.add(start);
  yield* walk(start, '');
}
