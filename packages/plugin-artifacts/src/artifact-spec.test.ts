import { MalformedPayloadError } from '@tcw/core';
import { describe, expect, it } from 'vitest';
import { checkSpecs } from './artifact-spec.js';

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    if (MalformedPayloadError.isMalformedPayload(error)) return error.problems.map((p) => p.pointer);
    throw error;
  }
  return [];
}

describe('checkSpecs', () => {
  it('names artifacts after their normalised path by default', () => {
    const specs = checkSpecs([
      { type: 'file', path: './out/a.txt' },
      { type: 'file', path: '/builds/worker/b.txt' },
      { type: 'directory', path: 'dist/' },
      { type: 'file', path: 'c.txt', name: 'public/c.txt' },
    ]);
    expect(specs.map((s) => [s.index, s.name])).toEqual([
      [0, 'out/a.txt'],
      [1, 'builds/worker/b.txt'],
      [2, 'dist'],
      [3, 'public/c.txt'],
    ]);
  });

  it('refuses paths that climb out, however they are spelled', () => {
    expect(
      problems(() =>
        checkSpecs([
          { type: 'file', path: '..' },
          { type: 'file', path: '../x', name: 'a' },
          { type: 'file', path: 'a/../../x', name: 'b' },
          { type: 'file', path: 'a\\..\\..\\x', name: 'c' },
          { type: 'file', path: 'a/../x', name: 'd' },
        ]),
      ),
    ).toEqual(['/artifacts/0/path', '/artifacts/1/path', '/artifacts/2/path', '/artifacts/3/path']);
  });

  it('checks expires against the deadline, names for duplicates and reserved ones', () => {
    const deadline = '2030-01-02T00:00:00.000Z';
    expect(
      problems(() =>
        checkSpecs(
          [
            { type: 'file', path: 'a', name: 'x', expires: '2030-01-01T00:00:00.000Z' },
            { type: 'file', path: 'b', name: 'x', expires: '2030-01-03T00:00:00.000Z' },
            { type: 'file', path: 'c', name: 'public/logs/live.log' },
            { type: 'directory', path: '.' },
          ],
          { deadline },
        ),
      ),
    ).toEqual(['/artifacts/0/expires', '/artifacts/1/name', '/artifacts/2/name', '/artifacts/3/name']);
  });
});
