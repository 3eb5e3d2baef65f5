import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;
const child = fileURLToPath(new URL('./fixtures/upload-child.mjs', import.meta.url));

/** sha256 of `size` zero bytes (what a sparse file reads as), without a buffer of that size. */
function sha256OfZeros(size: number): string {
  const hash = createHash('sha256');
  const block = Buffer.alloc(MiB);
  for (let left = size; left > 0; left -= MiB) hash.update(left >= MiB ? block : block.subarray(0, left));
  return hash.digest('hex');
}

describe('artifacts plugin: memory', () => {
  it('uploads a 1 GiB file with less than 64 MB of memory growth in the uploading process', async () => {
    // The upload runs in a child process (the plugin's built upload path and core's ArtifactUploader) so that
    // its peak RSS (VmHWM) is its own; the object store is a real loopback HTTP sink here that hashes and drops.
    // The queue calls around the PUT are a minimal in-child stand-in (no local queue on this branch).
    // The child imports the built package (`@tcw/plugin-artifacts`): turbo builds before testing.
    if (!existsSync(fileURLToPath(new URL('../dist/index.js', import.meta.url)))) {
      throw new Error('packages/plugin-artifacts/dist is missing: run `pnpm build` first');
    }
    const dir = await mkdtemp(join(tmpdir(), 'tcw-artifacts-1g-'));
    const received = { bytes: 0, sha256: '', puts: 0 };
    const sink = createServer((req, res) => {
      received.puts++;
      const hash = createHash('sha256');
      req.on('data', (chunk: Buffer) => {
        received.bytes += chunk.length;
        hash.update(chunk);
      });
      req.on('end', () => {
        received.sha256 = hash.digest('hex');
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
    try {
      const handle = await open(join(dir, 'big.bin'), 'w');
      await handle.truncate(GiB); // sparse: no disk space used
      await handle.close();
      const url = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/object`;
      const stdout = await new Promise<string>((resolve, reject) => {
        execFile(
          process.execPath,
          ['--expose-gc', child, url, dir, 'big.bin'],
          { maxBuffer: MiB },
          (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out)),
        );
      });
      const report = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as {
        before: { hwm: number; rss: number };
        after: { hwm: number; rss: number };
        uploaded: Array<{ size: number; sha256: string; contentEncoding: string }>;
        hashes: { sha256: string };
      };
      const zeros = sha256OfZeros(GiB);
      expect(report.uploaded).toHaveLength(1);
      expect(report.uploaded[0]).toMatchObject({ size: GiB, sha256: zeros, contentEncoding: 'identity' });
      expect(report.hashes.sha256).toBe(zeros);
      expect(received).toEqual({ bytes: GiB, sha256: zeros, puts: 1 });
      const growth = report.after.hwm - report.before.rss;
      expect(growth).toBeGreaterThan(0);
      expect(growth).toBeLessThan(64 * 1000 * 1000);
    } finally {
      sink.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
