import { closeSync, open as openCallback, openSync, writeSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';

/** What engines and plugins write to a task's log. */
export interface TaskLogWriter {
  /** Raw output of the task (engines write stdout here, as it comes). */
  write(data: string | Uint8Array): void;
  /** A worker line: `[taskcluster 2026-11-23T19:15:55.123Z] message`. */
  info(message: string): void;
  /** `[taskcluster:warn <time>] message` */
  warn(message: string): void;
  /** `[taskcluster:error <time>] message` */
  error(message: string): void;
  /** Mask this value (as `[secret]`) in everything written from now on. */
  addSecret(value: string): void;
}

/** What readers of a task's log (livelog, the backing-log upload) get. */
export interface TaskLogReader {
  /** A stream of the whole log from byte 0 that follows new writes and ends when the log is closed. */
  createReader(options?: { start?: number }): Readable;
  /** Bytes written so far. */
  readonly size: number;
  readonly closed: boolean;
  /** Resolves when the log is closed. */
  readonly done: Promise<void>;
}

const READ_CHUNK = 64 * 1024;

/**
 * The single writer of a task's log: one stream in a backing file, with any number of concurrent readers that
 * replay from the start and then follow new bytes as they are written (no batching delay). Worker lines start on
 * a line of their own even when the task's output did not end with a newline.
 */
export class TaskLog implements TaskLogWriter, TaskLogReader {
  readonly path: string;
  #fd: number | undefined;
  #size = 0;
  #endsWithNewline = true;
  #closed = false;
  #waiters = new Set<() => void>();
  #secrets: string[] = [];
  #resolveDone!: () => void;
  readonly done: Promise<void>;

  private constructor(path: string, fd: number) {
    this.path = path;
    this.#fd = fd;
    this.done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  /** Creates (truncates) the backing file. */
  static create(path: string): TaskLog {
    return new TaskLog(path, openSync(path, 'w', 0o600));
  }

  /** `create`, with the file opened on the thread pool (creating a file can take a while on some disks). */
  static async open(path: string): Promise<TaskLog> {
    const fd = await new Promise<number>((resolve, reject) =>
      openCallback(path, 'w', 0o600, (error, opened) => (error ? reject(error) : resolve(opened))),
    );
    return new TaskLog(path, fd);
  }

  get size(): number {
    return this.#size;
  }

  get closed(): boolean {
    return this.#closed;
  }

  addSecret(value: string): void {
    if (value.length >= 4 && !this.#secrets.includes(value)) {
      this.#secrets.push(value);
      this.#secrets.sort((a, b) => b.length - a.length);
    }
  }

  #mask(text: string): string {
    let out = text;
    for (const secret of this.#secrets) {
      out = out.split(secret).join('[secret]');
    }
    return out;
  }

  write(data: string | Uint8Array): void {
    if (this.#closed || this.#fd === undefined) return;
    let buf: Buffer;
    if (this.#secrets.length > 0) {
      buf = Buffer.from(this.#mask(typeof data === 'string' ? data : Buffer.from(data).toString('utf8')));
    } else {
      buf =
        typeof data === 'string'
          ? Buffer.from(data)
          : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    }
    if (buf.length === 0) return;
    let offset = 0;
    while (offset < buf.length) {
      offset += writeSync(this.#fd, buf, offset, buf.length - offset);
    }
    this.#size += buf.length;
    this.#endsWithNewline = buf[buf.length - 1] === 0x0a;
    this.#wake();
  }

  #line(tag: string, message: string): void {
    const prefix = `[${tag} ${new Date().toISOString()}] `;
    const lines = message.replace(/\n+$/, '').split('\n');
    const text = lines.map((l) => prefix + l).join('\n');
    this.write(`${this.#endsWithNewline ? '' : '\n'}${text}\n`);
  }

  info(message: string): void {
    this.#line('taskcluster', message);
  }

  warn(message: string): void {
    this.#line('taskcluster:warn', message);
  }

  error(message: string): void {
    this.#line('taskcluster:error', message);
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = new Set();
    for (const wake of waiters) wake();
  }

  #wait(): Promise<void> {
    return new Promise((resolve) => this.#waiters.add(resolve));
  }

  createReader(options: { start?: number } = {}): Readable {
    return Readable.from(this.#read(options.start ?? 0), { objectMode: false });
  }

  async *#read(start: number): AsyncGenerator<Buffer> {
    const handle = await open(this.path, 'r');
    try {
      let position = start;
      for (;;) {
        if (position < this.#size) {
          const want = Math.min(READ_CHUNK, this.#size - position);
          const buf = Buffer.allocUnsafe(want);
          const { bytesRead } = await handle.read(buf, 0, want, position);
          if (bytesRead === 0) continue;
          position += bytesRead;
          yield bytesRead === want ? buf : buf.subarray(0, bytesRead);
          continue;
        }
        if (this.#closed) return;
        await this.#wait();
      }
    } finally {
      await handle.close();
    }
  }

  /** Closes the log: no more writes; readers finish what is left, then end. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#fd !== undefined) {
      closeSync(this.#fd);
      this.#fd = undefined;
    }
    this.#wake();
    this.#resolveDone();
  }

  /** Closes the log and deletes its backing file. */
  async remove(): Promise<void> {
    await this.close();
    await rm(this.path, { force: true });
  }
}
