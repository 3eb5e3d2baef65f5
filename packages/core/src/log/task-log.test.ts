import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TaskLog } from './task-log.js';

async function collect(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function nextChunk(stream: Readable): Promise<string> {
  return new Promise((resolve) => stream.once('data', (c: Buffer) => resolve(c.toString('utf8'))));
}

describe('TaskLog', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tasklog-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prefixes worker lines and keeps them on lines of their own (opened on the thread pool, mode 0600)', async () => {
    const log = await TaskLog.open(join(dir, 'log'));
    expect((await stat(log.path)).mode & 0o777).toBe(0o600);
    log.write('partial');
    log.info('hello\nworld');
    log.error('bad');
    await log.close();
    const text = await readFile(log.path, 'utf8');
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toBe('partial');
    expect(lines[1]).toMatch(/^\[taskcluster \d{4}-\d\d-\d\dT[\d:.]+Z\] hello$/);
    expect(lines[2]).toMatch(/^\[taskcluster [^\]]+\] world$/);
    expect(lines[3]).toMatch(/^\[taskcluster:error [^\]]+\] bad$/);
  });

  it('gives every reader the whole log from byte 0, then new bytes, and ends them at close', async () => {
    const log = TaskLog.create(join(dir, 'log'));
    log.write('one\n');
    const early = log.createReader();
    const earlyText = collect(early);
    log.write('two\n');
    const late = log.createReader();
    const first = await nextChunk(late);
    expect(first).toBe('one\ntwo\n');
    late.pause();
    const follow = new Promise<string>((resolve) => late.once('data', (c: Buffer) => resolve(c.toString())));
    late.resume();
    log.write('three\n');
    expect(await follow).toBe('three\n');
    const lateRest = collect(late);
    await log.close();
    expect(await earlyText).toBe('one\ntwo\nthree\n');
    expect(await lateRest).toBe('');
    // a reader created after close still gets everything
    expect(await collect(log.createReader())).toBe('one\ntwo\nthree\n');
    expect(log.size).toBe(14);
    log.write('ignored after close');
    expect(log.size).toBe(14);
  });

  it('masks secrets', async () => {
    const log = TaskLog.create(join(dir, 'log'));
    log.addSecret('s3cr3t-token');
    log.write('token=s3cr3t-token\n');
    log.info('using s3cr3t-token');
    await log.close();
    const text = await readFile(log.path, 'utf8');
    expect(text).not.toContain('s3cr3t-token');
    expect(text).toContain('token=[secret]');
  });

  it('masks a secret split over writes (a pipe cuts its chunks anywhere), even one byte at a time', async () => {
    const log = TaskLog.create(join(dir, 'log'));
    log.addSecret('s3cr3t-token');
    log.write('token=s3cr');
    log.write(Buffer.from('3t-tok'));
    log.write('en and again: ');
    for (const byte of Buffer.from('s3cr3t-token\n')) log.write(Uint8Array.of(byte));
    await log.close();
    const text = await readFile(log.path, 'utf8');
    expect(text).toBe('token=[secret] and again: [secret]\n');
    expect(log.size).toBe(Buffer.byteLength(text));
  });

  it('with secrets, a character split over writes stays intact, and held bytes that were no secret are written', async () => {
    const log = TaskLog.create(join(dir, 'log'));
    log.addSecret('pässwörd');
    const bytes = Buffer.from('grüße pässw');
    log.write(bytes.subarray(0, 4)); // cuts ü in two
    log.write(bytes.subarray(4));
    // a worker line ends the task's output so far: the held 'pässw' is written before it, as it was
    log.info('a worker line');
    log.write('pä');
    await log.close();
    const text = await readFile(log.path, 'utf8');
    expect(text).toMatch(/^grüße pässw\n\[taskcluster [^\]]+\] a worker line\npä$/);
    expect(log.size).toBe(Buffer.byteLength(text));
  });

  it('a failed write (ENOSPC from /dev/full, a real device) never throws: reported once, the lost bytes counted', async () => {
    const log = TaskLog.create('/dev/full');
    const errors: NodeJS.ErrnoException[] = [];
    log.onWriteError((error) => errors.push(error));
    expect(() => log.write('abc')).not.toThrow();
    expect(() => log.info('a worker line')).not.toThrow();
    expect(errors).toHaveLength(1);
    expect(errors[0]!.code).toBe('ENOSPC');
    expect(log.writeError?.code).toBe('ENOSPC');
    expect(log.size).toBe(0);
    expect(log.lostBytes).toBeGreaterThan(3 + 'a worker line'.length);
    await log.close();
  });

  it('with maxBytes: keeps the head, drops the middle, writes the last tailBytes at close with what was dropped', async () => {
    const log = TaskLog.create(join(dir, 'log'), { maxBytes: 100, tailBytes: 30 });
    for (let i = 0; i < 20; i++) log.write(`line ${String(i).padStart(2, '0')} ......\n`); // 15 bytes each
    log.info('the task ended'); // a worker line past the limit is part of the tail
    expect(log.droppedBytes).toBeGreaterThan(0);
    await log.close();
    const text = await readFile(log.path, 'utf8');
    const lines = text.split('\n');
    // 100 bytes of head: six whole lines and 10 bytes of the seventh, then the notice on a line of its own
    expect(text.startsWith('line 00 ......\nline 01')).toBe(true);
    expect(lines[6]).toBe('line 06 ..');
    expect(lines[7]).toMatch(
      /^\[taskcluster:warn [^\]]+\] The log has reached its limit of 100 bytes: what follows is dropped, except its last 30 bytes, written when the task ends\.$/,
    );
    expect(lines[8]).toMatch(
      /^\[taskcluster:warn [^\]]+\] \d+ bytes of the log were dropped here \(its limit is 100 bytes\); the last 30 bytes follow\.$/,
    );
    // the kept tail is the last 30 bytes written: the end of the worker line
    expect(text.endsWith('] the task ended\n')).toBe(true);
    const tail = text.slice(text.indexOf('follow.\n') + 'follow.\n'.length);
    expect(Buffer.byteLength(tail)).toBe(30);
    const workerLine = `[taskcluster ${new Date().toISOString()}] the task ended\n`;
    expect(log.droppedBytes + 100 + 30).toBe(20 * 15 + workerLine.length);
  });

  it('masks the forms a secret takes in logs: URL-encoded, JSON-escaped, base64 at any alignment', async () => {
    const log = TaskLog.create(join(dir, 'log'));
    const secret = 'p@ss/w0rd"x';
    log.addSecret(secret);
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    log.write(`url: https://h/?pw=${encodeURIComponent(secret)}\n`);
    log.write(`json: ${JSON.stringify({ pw: secret })}\n`);
    // curl -v: the secret inside a longer base64 text, at each of the three byte offsets
    for (const user of ['u', 'us', 'use']) log.write(`Authorization: Basic ${b64(`${user}:${secret}`)}\n`);
    log.write(`plain base64: ${b64(secret)}\n`);
    await log.close();
    const text = await readFile(log.path, 'utf8');
    expect(text).not.toContain(secret);
    expect(text).not.toContain(encodeURIComponent(secret));
    expect(text).not.toContain(JSON.stringify(secret).slice(1, -1));
    for (const user of ['u', 'us', 'use']) expect(text).not.toContain(b64(`${user}:${secret}`));
    expect(text).not.toContain(b64(secret));
    expect(text.match(/\[secret\]/g)).toHaveLength(6);
    // what is left of a base64 text is only the characters that also carry other bytes
    expect(text).toMatch(/^Authorization: Basic [A-Za-z0-9+/]{1,4}\[secret\][A-Za-z0-9+/=]{0,4}$/m);
  });

  it('removes its backing file', async () => {
    const log = TaskLog.create(join(dir, 'log'));
    log.write('x');
    await log.remove();
    await expect(readFile(log.path)).rejects.toThrow();
    expect(log.closed).toBe(true);
  });
});
