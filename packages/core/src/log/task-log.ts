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
  /**
   * Mask this value (as `[secret]`) in everything written from now on (values of 4+ characters), also when it is
   * split over writes (bytes that may begin a secret are held back until the next write, a worker line or close),
   * and in the forms logs show it in: URL-encoded, JSON-escaped, base64 at any alignment (`secretForms`).
   */
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
const MASK = Buffer.from('[secret]');

export interface TaskLogOptions {
  /**
   * Bytes kept from the start of the log (default: no limit). Past them a line says so, and only the last
   * `tailBytes` of what follows are kept: written at close, after a line saying how much was dropped (so the end
   * of a task — its error, the worker's verdict — is never lost).
   */
  maxBytes?: number;
  /** Default: a quarter of `maxBytes`, at most 1 MiB. */
  tailBytes?: number;
}

/**
 * The forms in which a secret shows up in logs: as it is, URL-encoded, JSON-escaped, and base64-encoded — at each
 * of the three alignments it can have inside a longer base64 text (`curl -v` printing `Authorization: Basic
 * base64(user:password)`), keeping only the characters made of the secret's bits alone (8 or more of them).
 */
export function secretForms(value: string): string[] {
  const forms = new Set([value, encodeURIComponent(value), JSON.stringify(value).slice(1, -1)]);
  const bytes = Buffer.from(value);
  for (const shift of [0, 1, 2]) {
    const encoded = Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64');
    const from = Math.ceil((8 * shift) / 6);
    const to = Math.floor((8 * (shift + bytes.length)) / 6);
    if (to - from >= 8) forms.add(encoded.slice(from, to));
  }
  return [...forms];
}

/** `secretForms` as bytes, remembered: the worker-wide secrets are added to every task's log. */
const formsCache = new Map<string, Buffer[]>();
function formsAsBytes(value: string): Buffer[] {
  let forms = formsCache.get(value);
  if (!forms) {
    forms = secretForms(value).map((f) => Buffer.from(f));
    if (formsCache.size >= 64) formsCache.delete(formsCache.keys().next().value!);
    formsCache.set(value, forms);
  }
  return forms;
}

/** `1.5 MiB`, `64 KiB`, `12 bytes`. */
function bytesText(n: number): string {
  if (n >= 1024 * 1024) return `${+(n / (1024 * 1024)).toFixed(1)} MiB`;
  if (n >= 1024) return `${+(n / 1024).toFixed(1)} KiB`;
  return `${n} bytes`;
}

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
  /** Secrets as bytes, longest first (masking works on bytes: no decoding, so a split character stays intact). */
  #secrets: Buffer[] = [];
  /** The end of what was written that could be the start of a secret: held back until the next write or close. */
  #held: Buffer | undefined;
  #writeError: NodeJS.ErrnoException | undefined;
  #lostBytes = 0;
  #onWriteError: ((error: NodeJS.ErrnoException) => void) | undefined;
  readonly #maxBytes: number;
  readonly #tailBytes: number;
  /** Past `maxBytes`: the last `tailBytes` written since, kept in memory until close. */
  #tail: Buffer[] | undefined;
  #tailLength = 0;
  #dropped = 0;
  #resolveDone!: () => void;
  readonly done: Promise<void>;

  private constructor(path: string, fd: number, options: TaskLogOptions) {
    this.path = path;
    this.#fd = fd;
    this.#maxBytes = options.maxBytes && options.maxBytes > 0 ? options.maxBytes : Number.POSITIVE_INFINITY;
    this.#tailBytes = Math.max(0, Math.floor(options.tailBytes ?? Math.min(this.#maxBytes / 4, 1024 * 1024)));
    this.done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  /** Creates (truncates) the backing file. */
  static create(path: string, options: TaskLogOptions = {}): TaskLog {
    return new TaskLog(path, openSync(path, 'w', 0o600), options);
  }

  /** `create`, with the file opened on the thread pool (creating a file can take a while on some disks). */
  static async open(path: string, options: TaskLogOptions = {}): Promise<TaskLog> {
    const fd = await new Promise<number>((resolve, reject) =>
      openCallback(path, 'w', 0o600, (error, opened) => (error ? reject(error) : resolve(opened))),
    );
    return new TaskLog(path, fd, options);
  }

  /** Bytes dropped because the log reached `maxBytes` (not counting the kept tail). */
  get droppedBytes(): number {
    return this.#dropped + (this.#tail ? this.#tailOverflow() : 0);
  }

  get size(): number {
    return this.#size;
  }

  /** The first write that failed (a full disk, an I/O error), if any. Writes go on being tried after it. */
  get writeError(): NodeJS.ErrnoException | undefined {
    return this.#writeError;
  }

  /** Bytes that could not be written (they are not in the log). */
  get lostBytes(): number {
    return this.#lostBytes;
  }

  /** `listener` is called once, at the first failed write (a write never throws). */
  onWriteError(listener: (error: NodeJS.ErrnoException) => void): void {
    this.#onWriteError = listener;
  }

  get closed(): boolean {
    return this.#closed;
  }

  addSecret(value: string): void {
    if (value.length < 4) return;
    let added = false;
    for (const bytes of formsAsBytes(value)) {
      if (this.#secrets.includes(bytes)) continue;
      this.#secrets.push(bytes);
      added = true;
    }
    if (added) this.#secrets.sort((a, b) => b.length - a.length);
  }

  /** Every whole secret in `buf` replaced by `[secret]` (the longest first). */
  #mask(buf: Buffer): Buffer {
    let out = buf;
    for (const secret of this.#secrets) {
      let at = out.indexOf(secret);
      if (at < 0) continue;
      const parts: Buffer[] = [];
      let from = 0;
      while (at >= 0) {
        parts.push(out.subarray(from, at), MASK);
        from = at + secret.length;
        at = out.indexOf(secret, from);
      }
      parts.push(out.subarray(from));
      out = Buffer.concat(parts);
    }
    return out;
  }

  /** How many bytes at the end of `buf` are a proper beginning of some secret (they may be completed next write). */
  #partialSecretAtEnd(buf: Buffer): number {
    let longest = 0;
    for (const secret of this.#secrets) {
      for (let n = Math.min(secret.length - 1, buf.length); n > longest; n--) {
        if (buf[buf.length - n] === secret[0] && buf.subarray(buf.length - n).equals(secret.subarray(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }

  write(data: string | Uint8Array): void {
    if (this.#closed || this.#fd === undefined) return;
    let buf =
      typeof data === 'string'
        ? Buffer.from(data)
        : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (this.#secrets.length > 0) {
      // a secret split over two writes (a pipe's chunks) is found too: the held bytes go first
      if (this.#held) buf = Buffer.concat([this.#held, buf]);
      this.#held = undefined;
      buf = this.#mask(buf);
      const hold = this.#partialSecretAtEnd(buf);
      if (hold > 0) {
        this.#held = Buffer.from(buf.subarray(buf.length - hold));
        buf = buf.subarray(0, buf.length - hold);
      }
    }
    this.#append(buf);
  }

  #append(buf: Buffer): void {
    if (buf.length === 0 || this.#fd === undefined) return;
    if (this.#tail) {
      this.#keepTail(buf);
      return;
    }
    const room = this.#maxBytes - this.#size;
    if (buf.length > room) {
      this.#toFile(buf.subarray(0, Math.max(0, room)));
      this.#tail = [];
      this.#toFile(
        Buffer.from(
          `${this.#endsWithNewline ? '' : '\n'}[taskcluster:warn ${new Date().toISOString()}] The log has reached ` +
            `its limit of ${bytesText(this.#maxBytes)}: what follows is dropped, except its last ` +
            `${bytesText(this.#tailBytes)}, written when the task ends.\n`,
        ),
      );
      this.#keepTail(buf.subarray(Math.max(0, room)));
      return;
    }
    this.#toFile(buf);
  }

  /** Past the limit: `buf` joins the kept tail, and what no longer fits in it is dropped. */
  #keepTail(buf: Buffer): void {
    this.#tail!.push(Buffer.from(buf)); // a copy: the writer may reuse its buffer
    this.#tailLength += buf.length;
    this.#endsWithNewline = buf[buf.length - 1] === 0x0a;
    const tail = this.#tail!;
    while (tail.length > 1 && this.#tailLength - tail[0]!.length >= this.#tailBytes) {
      this.#tailLength -= tail[0]!.length;
      this.#dropped += tail.shift()!.length;
    }
  }

  /** Bytes of the kept tail beyond `tailBytes` (cut at close). */
  #tailOverflow(): number {
    return Math.max(0, this.#tailLength - this.#tailBytes);
  }

  /** At close: how much was dropped, then the kept tail. */
  #flushTail(): void {
    const tail = this.#tail;
    if (!tail) return;
    this.#tail = undefined;
    const overflow = this.#tailOverflow();
    this.#dropped += overflow;
    const kept = Buffer.concat(tail).subarray(overflow);
    this.#toFile(
      Buffer.from(
        `[taskcluster:warn ${new Date().toISOString()}] ` + // a line of its own: the limit's notice, the last thing in the file, ended one
          `${bytesText(this.#dropped)} of the log were dropped here (its limit is ${bytesText(this.#maxBytes)}); ` +
          `the last ${bytesText(kept.length)} follow.\n`,
      ),
    );
    this.#toFile(kept);
  }

  #toFile(buf: Buffer): void {
    if (buf.length === 0 || this.#fd === undefined) return;
    let offset = 0;
    try {
      while (offset < buf.length) {
        offset += writeSync(this.#fd, buf, offset, buf.length - offset);
      }
    } catch (error) {
      // never thrown at the writer (an engine's stdout handler: it would take the worker down): counted, reported
      this.#lostBytes += buf.length - offset;
      if (!this.#writeError) {
        this.#writeError = error as NodeJS.ErrnoException;
        this.#onWriteError?.(this.#writeError);
      }
    }
    if (offset === 0) return;
    this.#size += offset;
    // past the limit the kept tail is what ends the log (see #keepTail)
    if (!this.#tail) this.#endsWithNewline = buf[offset - 1] === 0x0a;
    this.#wake();
  }

  #line(tag: string, message: string): void {
    const prefix = `[${tag} ${new Date().toISOString()}] `;
    const lines = message.replace(/\n+$/, '').split('\n');
    const text = lines.map((l) => prefix + l).join('\n');
    // the task's output so far goes first, held bytes included: a worker line ends whatever it was writing
    const held = this.#held;
    this.#held = undefined;
    if (held) this.#append(held);
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
    // held bytes were not a whole secret: they are the task's output
    if (this.#held) this.#append(this.#held);
    this.#held = undefined;
    this.#flushTail();
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
