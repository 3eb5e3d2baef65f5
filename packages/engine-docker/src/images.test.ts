import { Readable } from 'node:stream';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { hasScope } from './docker-engine.js';
import { decompressAuto, dockerMessage, isValidImageName, registryOf } from './images.js';

async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks).toString();
}

describe('image names', () => {
  it.each([
    'busybox',
    'ubuntu:24.04',
    'ghcr.io/org/repo/image:v1.2-rc_3',
    '127.0.0.1:5000/tcw/test:v1',
    'localhost/x',
    `alpine@sha256:${'a'.repeat(64)}`,
  ])('%s is valid', (name) => expect(isValidImageName(name)).toBe(true));

  it.each(['', 'UPPER/case', 'a b', 'x::y', 'repo/', '-lead', 'img:tag:tag', 'a/b@sha256:zz'])(
    '%s is not',
    (name) => expect(isValidImageName(name)).toBe(false),
  );

  it('finds the registry host', () => {
    expect(registryOf('busybox')).toBe('docker.io');
    expect(registryOf('library/busybox:1')).toBe('docker.io');
    expect(registryOf('ghcr.io/a/b')).toBe('ghcr.io');
    expect(registryOf('127.0.0.1:5000/a')).toBe('127.0.0.1:5000');
    expect(registryOf('localhost/a')).toBe('localhost');
  });
});

describe('scopes', () => {
  it('matches exactly or by a trailing *', () => {
    expect(hasScope(['docker-worker:capability:privileged'], 'docker-worker:capability:privileged')).toBe(
      true,
    );
    expect(hasScope(['docker-worker:*'], 'docker-worker:capability:privileged')).toBe(true);
    expect(hasScope(['*'], 'docker-worker:capability:privileged')).toBe(true);
    expect(hasScope(['docker-worker:capability:privileged:x'], 'docker-worker:capability:privileged')).toBe(
      false,
    );
    expect(hasScope(['docker-worker:capability:priv'], 'docker-worker:capability:privileged')).toBe(false);
    expect(hasScope([], 'a')).toBe(false);
  });
});

describe('decompressAuto', () => {
  const data = 'a docker save tarball, say '.repeat(1000);
  it.each([
    ['plain', Buffer.from(data)],
    ['gzip', gzipSync(data)],
    ['zstd', zstdCompressSync(Buffer.from(data))],
  ])('%s', async (_kind, bytes) => {
    // in small chunks, so that the magic bytes arrive split
    const chunks = [];
    for (let i = 0; i < bytes.length; i += 3) chunks.push(bytes.subarray(i, i + 3));
    expect(await text(await decompressAuto(Readable.from(chunks)))).toBe(data);
  });

  it('a corrupt gzip stream errors instead of ending quietly', async () => {
    const bad = Buffer.concat([gzipSync(data).subarray(0, 40), Buffer.from('garbage')]);
    await expect(text(await decompressAuto(Readable.from([bad])))).rejects.toThrow();
  });
});

describe('dockerMessage', () => {
  it("strips dockerode's wrapping", () => {
    expect(
      dockerMessage(new Error('(HTTP code 500) server error - Head "x": no basic auth credentials')),
    ).toBe('Head "x": no basic auth credentials');
    expect(dockerMessage({ json: { message: 'manifest unknown' }, message: 'x' })).toBe('manifest unknown');
  });
});
