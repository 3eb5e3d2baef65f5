/**
 * The worker's side of the spawner (`./spawner-main.ts`): a small Node process, started on the first spawn, that
 * does fork/exec for the worker so that starting a task no longer forks the (large) worker process on its main
 * thread. `launchViaSpawner()` resolves `undefined` whenever the spawner cannot be used (it cannot start, it died
 * before answering, `TCW_SPAWNER=0` is checked by the caller): the caller then spawns directly, as before.
 *
 * Child stdio does not pass through the spawner: the worker listens on a unix socket in a private (0700) temporary
 * folder, the spawner connects once per stream and hands the connected socket to the child as its fd 0, 1 or 2. Each
 * connection starts with a header naming the request and the fd; the worker strips it, so `stdout`/`stderr` carry
 * exactly what the child wrote and end when the whole tree has closed them, as with pipes (which Node makes from
 * unix socket pairs too).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface SpawnRequest {
  file: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  uid?: number;
  gid?: number;
  stdin: boolean;
}

export interface SpawnedExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A child the spawner started (or failed to start: `pid` -1, `exited` resolves 127 like a failed spawn()). */
export interface Launched {
  readonly pid: number;
  readonly stdin: Socket | null;
  readonly stdout: Socket;
  readonly stderr: Socket;
  readonly exited: Promise<SpawnedExit>;
  running(): boolean;
  /**
   * Runs if the spawner dies while the child runs, just before `exited` resolves `{code: null, signal: 'SIGKILL'}`:
   * nobody could tell when the child exits any more, so the caller kills its tree.
   */
  onLost(handler: () => void): void;
}

/** Header each stdio connection starts with: the request id as 8 hex digits, the fd, '\n' (see spawner-main.ts). */
const HEADER_LENGTH = 10;
const HEADER = /^([0-9a-f]{8})([0-2])\n$/;
/** A request whose pid and sockets have not all arrived after this fails (the spawner is stuck or lost them). */
const HANDOVER_TIMEOUT_MS = 10_000;
/** The spawner starts nothing later than this before HANDOVER_TIMEOUT_MS: time for its answer to arrive. */
const SPAWNER_DEADLINE_MARGIN_MS = 2000;

type Reply =
  | { id: number; pid: number }
  | { id: number; exit: SpawnedExit }
  | { id: number; error: { code: string; message: string } }
  | { id: number; threw: { code: string; message: string } }
  | { id: number; unavailable: { code: string; message: string } };

interface PendingRequest {
  id: number;
  stdin: boolean;
  /** by fd; fd 0 only with `stdin` */
  sockets: Array<Socket | undefined>;
  pid?: number;
  /** the spawn failed asynchronously (ENOENT...): the child "exits" 127 */
  spawnFailed?: boolean;
  exit?: SpawnedExit;
  handedOver: boolean;
  resolve(launched: Launched | undefined): void;
  reject(error: Error): void;
  resolveExit?: (exit: SpawnedExit) => void;
  lost?: () => void;
  timer: NodeJS.Timeout;
}

const ignore = () => {};

let listener: { server: Server; path: string; listening: Promise<void> } | undefined;
let current: Spawner | undefined;
/** Every spawner still connected: a retired one (see `retire`) still finishes its requests. */
const connected = new Set<Spawner>();
/** Request ids are unique across spawners: a stdio connection's header names its request, whoever made it. */
let nextId = 1;

/** A request id (32 bits, never 0; the header carries 8 hex digits). */
function takeId(): number {
  const id = nextId;
  nextId = nextId >= 0xffffffff ? 1 : nextId + 1;
  return id;
}
/** The spawner cannot run here (no entry file, or it died before serving anything): spawn directly from now on. */
let broken = false;

/** Where the spawner's entry is: next to this module once built (dist/), or the .ts source under vitest (src/). */
function entryArgs(): string[] | undefined {
  const js = fileURLToPath(new URL('./spawner-main.js', import.meta.url));
  if (existsSync(js)) return [js];
  const ts = fileURLToPath(new URL('./spawner-main.ts', import.meta.url));
  if (existsSync(ts)) return ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', ts];
  return undefined;
}

function ownListener(): NonNullable<typeof listener> {
  if (listener) return listener;
  // a root-only folder: whoever can connect could become a child's stdin or stdout
  const dir = mkdtempSync(join(tmpdir(), 'tcw-spawner-'));
  const path = join(dir, 'stdio.sock');
  const server = createServer((socket) => acceptStdio(socket));
  server.on('error', ignore); // after listen() succeeded there is nothing to do about one
  server.unref();
  const listening = new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  listener = { server, path, listening };
  return listener;
}

/** Reads a stdio connection's header and gives the socket to its request; anything else is closed. */
function acceptStdio(socket: Socket): void {
  socket.setTimeout(HANDOVER_TIMEOUT_MS, () => socket.destroy());
  socket.on('error', ignore); // until the socket is handed over; then its errors are its owner's, as a pipe's
  const onReadable = () => {
    if (socket.readableLength < HEADER_LENGTH) {
      if (socket.readableEnded || socket.destroyed) socket.destroy();
      return;
    }
    // Leave the header's last byte ('\n') in the buffer until the socket is handed over: a socket whose buffer is
    // empty when the child's EOF arrives ends and closes at once, before its owner could listen for 'close'.
    const head = (socket.read(HEADER_LENGTH - 1) as Buffer).toString('latin1');
    socket.off('readable', onReadable);
    socket.setTimeout(0);
    const match = HEADER.exec(`${head}\n`);
    const id = match ? Number.parseInt(match[1]!, 16) : -1;
    if (![...connected].some((s) => s.adopt(id, Number(match?.[2]), socket))) socket.destroy();
  };
  socket.on('readable', onReadable);
}

class Spawner {
  readonly child: ChildProcess;
  private readonly requests = new Map<number, PendingRequest>();
  private served = false;
  private retired = false;
  private dead = false;
  /**
   * The id of the next request, named to the spawner ahead ({prepare}) so it connects that request's stdio while
   * nothing waits; the connections that arrived for it so far, by fd.
   */
  private prepared: { id: number; sockets: Array<Socket | undefined> } | undefined;

  constructor(args: string[], socketPath: string) {
    const env = { ...process.env };
    delete env.NODE_OPTIONS; // the spawner needs none of the worker's preloads
    // detached: a Ctrl-C meant for the worker's terminal must not kill the spawner (and with it the running tasks)
    this.child = spawn(process.execPath, [...args, socketPath], {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      detached: true,
      env,
    });
    this.child.unref();
    this.child.channel?.unref();
    connected.add(this);
    this.child.on('message', (reply: Reply) => this.onReply(reply));
    this.child.once('disconnect', () => this.die());
    this.child.once('error', () => this.die());
    this.prepareNext();
  }

  /** Names the next request's id to the spawner, which connects its stdio ahead (see spawner-main.ts). */
  private prepareNext(): void {
    if (this.dead || this.retired) return;
    const id = takeId();
    this.prepared = { id, sockets: [] };
    this.child.send({ prepare: id }, undefined, undefined, (error) => {
      if (error) this.die();
    });
  }

  /** Closes the connections made ahead for a request that will not come (the spawner closes its side). */
  private dropPrepared(): void {
    for (const s of this.prepared?.sockets ?? []) s?.destroy();
    this.prepared = undefined;
  }

  launch(request: SpawnRequest): Promise<Launched | undefined> {
    if (this.dead) return Promise.resolve(undefined);
    let id: number;
    let sockets: Array<Socket | undefined> = [];
    if (this.prepared) {
      ({ id, sockets } = this.prepared);
      this.prepared = undefined;
      for (const s of sockets) s?.ref(); // from now on they belong to a request, like any stdio connection
      if (!request.stdin) {
        sockets[0]?.destroy();
        sockets[0] = undefined;
      }
    } else {
      id = takeId();
    }
    return new Promise((resolve, reject) => {
      const pending: PendingRequest = {
        id,
        stdin: request.stdin,
        sockets,
        handedOver: false,
        resolve,
        reject,
        timer: setTimeout(() => this.timedOut(pending), HANDOVER_TIMEOUT_MS).unref(),
      };
      this.track(pending);
      // the spawner does not start it later than this: past it, this side may have given up (timedOut)
      const deadline = Date.now() + HANDOVER_TIMEOUT_MS - SPAWNER_DEADLINE_MARGIN_MS;
      this.child.send({ ...request, id, detached: true, deadline }, undefined, undefined, (error) => {
        if (error) this.die();
      });
      // after the request: the spawner drops a prepared set it has not used when told of the next one
      this.prepareNext();
    });
  }

  /** A stdio connection named request `id`, stream `fd`: true when it belongs to a request waiting for it. */
  adopt(id: number, fd: number, socket: Socket): boolean {
    const pending = this.requests.get(id);
    if (!pending) {
      if (this.prepared?.id !== id || this.prepared.sockets[fd]) return false;
      // made ahead for the next request: held (without keeping this process alive) until it comes
      this.prepared.sockets[fd] = socket;
      socket.unref();
      return true;
    }
    if (pending.handedOver || pending.sockets[fd] || (fd === 0 && !pending.stdin)) return false;
    pending.sockets[fd] = socket;
    this.handOver(pending);
    return true;
  }

  private onReply(reply: Reply): void {
    const pending = this.requests.get(reply.id);
    if (!pending) {
      // a request given up on (timeout) whose child started after all: it must not run unobserved
      if ('pid' in reply) killGroup(reply.pid);
      return;
    }
    this.served = true;
    if ('pid' in reply) {
      pending.pid = reply.pid;
      this.handOver(pending);
    } else if ('error' in reply) {
      pending.spawnFailed = true;
      this.handOver(pending);
    } else if ('exit' in reply) {
      if (pending.handedOver) this.finish(pending, reply.exit);
      else pending.exit = reply.exit;
    } else if ('threw' in reply) {
      this.forget(pending);
      pending.reject(Object.assign(new Error(reply.threw.message), { code: reply.threw.code }));
    } else {
      this.forget(pending);
      pending.resolve(undefined);
    }
  }

  /** Resolves the request once the spawner has answered and every stdio socket has arrived. */
  private handOver(pending: PendingRequest): void {
    const answered = pending.pid !== undefined || pending.spawnFailed;
    const streams = pending.sockets[1] && pending.sockets[2] && (!pending.stdin || pending.sockets[0]);
    if (!answered || !streams || pending.handedOver) return;
    pending.handedOver = true;
    clearTimeout(pending.timer);
    const [stdin, stdout, stderr] = pending.sockets as [Socket | undefined, Socket, Socket];
    for (const s of pending.sockets) {
      s?.off('error', ignore);
      s?.read(1); // the header's '\n' (see acceptStdio)
    }
    // the child may write to its fd 0: drain it so the connection ends (and closes) with the child, as a pipe would
    stdin?.resume();
    const pid = pending.spawnFailed ? -1 : pending.pid!;
    let exited: Promise<SpawnedExit>;
    if (pending.spawnFailed) {
      this.forget(pending);
      exited = Promise.resolve({ code: 127, signal: null });
    } else {
      exited = new Promise((resolve) => {
        pending.resolveExit = resolve;
      });
      if (pending.exit) this.finish(pending, pending.exit);
    }
    let done = pid < 0;
    void exited.then(() => {
      done = true;
    });
    pending.resolve({
      pid,
      stdin: stdin ?? null,
      stdout,
      stderr,
      exited,
      running: () => !done,
      onLost: (handler) => {
        pending.lost = handler;
      },
    });
  }

  private finish(pending: PendingRequest, exit: SpawnedExit): void {
    this.forget(pending);
    pending.resolveExit?.(exit);
  }

  private track(pending: PendingRequest): void {
    this.requests.set(pending.id, pending);
    // while a request is open the worker must stay alive, as a direct child's handle would keep it
    if (this.requests.size === 1) this.child.channel?.ref();
  }

  private forget(pending: PendingRequest): void {
    clearTimeout(pending.timer);
    if (!this.requests.delete(pending.id)) return;
    if (!pending.handedOver) for (const s of pending.sockets) s?.destroy();
    if (this.requests.size === 0) {
      this.child.channel?.unref();
      if (this.retired) this.release();
    }
  }

  private timedOut(pending: PendingRequest): void {
    const missing = pending.pid === undefined && !pending.spawnFailed ? 'its pid' : 'its stdio connections';
    if (pending.pid !== undefined && !pending.exit) killGroup(pending.pid);
    this.forget(pending);
    pending.reject(
      new Error(`the tcw spawner did not hand over ${missing} within ${HANDOVER_TIMEOUT_MS / 1000} s`),
    );
    // a stuck spawner gets no new requests; it goes once its running children have exited
    this.retire();
  }

  private retire(): void {
    this.retired = true;
    this.dropPrepared();
    if (current === this) current = undefined;
    if (this.requests.size === 0) this.release();
  }

  /** Lets the spawner go while this process lives on (it leaves the socket in place, see spawner-main.ts). */
  private release(): void {
    if (!this.child.connected) return;
    this.child.send({ release: true }, undefined, undefined, () => {
      if (this.child.connected) this.child.disconnect();
    });
  }

  /** The spawner is gone: running children are killed, requests not yet answered go the direct way. */
  private die(): void {
    if (this.dead) return;
    this.dead = true;
    this.dropPrepared();
    connected.delete(this);
    if (current === this) current = undefined;
    if (!this.served && !this.retired) broken = true;
    for (const pending of [...this.requests.values()]) {
      this.forget(pending);
      if (pending.handedOver) {
        pending.lost?.();
        pending.resolveExit?.({ code: null, signal: 'SIGKILL' });
      } else if (pending.pid !== undefined) {
        if (!pending.exit) killGroup(pending.pid);
        pending.reject(new Error('the tcw spawner died while it was starting the command'));
      } else {
        pending.resolve(undefined);
      }
    }
  }
}

/** Spawned children lead their own process group (detached): this ends one nobody will own. */
function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // gone
  }
}

async function spawner(): Promise<Spawner | undefined> {
  if (broken) return undefined;
  if (!current) {
    const args = entryArgs();
    if (!args) {
      broken = true;
      return undefined;
    }
    try {
      const { path } = ownListener();
      current = new Spawner(args, path);
    } catch {
      broken = true;
      return undefined;
    }
  }
  const spawnerNow = current;
  try {
    await listener!.listening;
  } catch {
    broken = true;
    return undefined;
  }
  return spawnerNow;
}

/**
 * Starts `request` through the spawner. Resolves `undefined` when the spawner cannot be used (the caller spawns
 * directly); rejects like `spawn()` throws (bad argument, EPERM...).
 */
export async function launchViaSpawner(request: SpawnRequest): Promise<Launched | undefined> {
  const s = await spawner();
  return s ? s.launch(request) : undefined;
}

/** The running spawner's pid, if there is one (for tests and diagnostics). */
export function spawnerPid(): number | undefined {
  return current && !broken ? current.child.pid : undefined;
}
