/** The version of this @tcw/core (kept in step with package.json by a test). */
export const CORE_VERSION = '0.1.0';

type Triple = [number, number, number];

function parse(version: string): Triple | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$/.exec(version.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

function compare(a: Triple, b: Triple): number {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

function one(version: Triple, range: string): boolean {
  const r = range.trim();
  if (r === '*' || r === '') return true;
  const op = /^(\^|~|>=|<=|>|<|=)?\s*(.+)$/.exec(r);
  if (!op) return false;
  const target = parse(op[2]!.replace(/\.x$/, '.0').replace(/\.x\./, '.0.'));
  if (!target) return false;
  const c = compare(version, target);
  switch (op[1]) {
    case '^':
      if (c < 0) return false;
      if (target[0] > 0) return version[0] === target[0];
      if (target[1] > 0) return version[0] === 0 && version[1] === target[1];
      return version[0] === 0 && version[1] === 0 && version[2] === target[2];
    case '~':
      return c >= 0 && version[0] === target[0] && version[1] === target[1];
    case '>=':
      return c >= 0;
    case '<=':
      return c <= 0;
    case '>':
      return c > 0;
    case '<':
      return c < 0;
    default:
      return c === 0;
  }
}

/**
 * Whether `version` satisfies `range`: the npm subset used by plugins — `*`, `^1.2.3`, `~1.2.3`, comparators
 * (`>=1.0.0 <2.0.0`, space = and) and alternatives joined by `||`.
 */
export function satisfies(version: string, range: string): boolean {
  const v = parse(version);
  if (!v) return false;
  return range.split('||').some((alt) =>
    alt
      .trim()
      .split(/\s+(?=[<>=^~*\d])/)
      .every((part) => one(v, part)),
  );
}
