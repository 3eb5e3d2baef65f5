/**
 * The spawner: a small long-lived Node process that does fork/exec on behalf of the worker (see `./client.ts`).
 *
 * Why: `child_process.spawn` forks the calling process, and libuv blocks the caller until the child has exec'd. For
 * the worker (~110 MB, engines, plugins, SQLite) that costs milliseconds of main-thread time per task; this process
 * loads nothing but Node builtins, so its forks are cheap and they do not block the worker at all.
 *
 * This file must import only Node builtins and use only erasable TypeScript (it is run from `src` with Node's type
 * stripping under vitest, and from `dist/spawner-main.js` once built).
 *
 * Protocol, one IPC message per event (argv[2] is the worker's unix socket path):
 *   worker → spawner  { prepare: id }                   open the stdio connections of the next request now
 *                     { id, file, args, cwd, env, detached, uid?, gid?, stdin: boolean, deadline }
 *                     { release: true }                 then a disconnect: the worker lives on, its socket stays
 *   spawner → worker  { id, pid }                       the child runs
 *                     { id, exit: { code, signal } }    it has exited
 *                     { id, error: { code, message } }  spawn failed asynchronously (ENOENT...): the worker's 127
 *                     { id, threw: { code, message } }  spawn() threw (bad argument, EPERM...)
 *                     { id, unavailable: { code, message } }  this process could not set up the child's stdio
 * Child stdio is never copied through this process: for each stream (stdin when asked, stdout, stderr) it connects to
 * the worker's socket, writes a header naming the request and the fd, and passes the connected socket as the child's
 * fd; then it closes its own copy. The header is 8 hex digits of the id, the fd digit, '\n' (`./client.ts` parses it).
 * The worker names the id of its next request ahead ({prepare}), so those connections are made while nothing waits
 * for them: a request then only forks. Without a prepared set (or if making it failed), they are made on request.
 */
import { spawn } from 'node:child_process';
import { rmdirSync, unlinkSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { dirname } from 'node:path';

interface Request {
  id: number;
  file: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  detached: boolean;
  uid?: number;
  gid?: number;
  stdin: boolean;
  /** Epoch ms after which the worker may have given up: not started past it. */
  deadline?: number;
}

const socketPath = process.argv[2];
if (!socketPath || !process.send) {
  process.stderr.write('tcw spawner: start me with an IPC channel and the worker socket path\n');
  process.exit(2);
}

function send(message: object): void {
  // the worker is gone when this fails: 'disconnect' below ends this process
  process.send?.(message, undefined, undefined, () => {});
}

function failure(error: unknown): { code: string; message: string } {
  const e = error as NodeJS.ErrnoException;
  return { code: String(e?.code ?? 'ERR_SPAWN'), message: String(e?.message ?? error) };
}

/** Connects to the worker and writes the header; resolves once the header is written, so it precedes any output. */
function openStream(id: number, fd: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath!);
    // never read from it: a stdin socket's data is the child's, not ours
    socket.pause();
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.write(`${id.toString(16).padStart(8, '0')}${fd}\n`, (error) => {
        if (error) return reject(error);
        // a prepared connection may wait a while: the worker closing it then is no reason to die
        socket.on('error', () => {});
        resolve(socket);
      });
    });
  });
}

/** The stdio connections of request `id`: fds 1 and 2, and 0 with `stdin`. */
async function openStreams(request: Pick<Request, 'id' | 'stdin'>): Promise<Socket[]> {
  const fds = request.stdin ? [0, 1, 2] : [1, 2];
  const opened = await Promise.allSettled(fds.map((fd) => openStream(request.id, fd)));
  const sockets = opened.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = opened.find((r) => r.status === 'rejected');
  if (failed) {
    for (const s of sockets) s.destroy();
    throw failed.reason;
  }
  return sockets;
}

/** The stdio connections (fds 0, 1, 2) made ahead for the worker's next request. */
let prepared: { id: number; streams: Promise<Socket[]> } | undefined;

function dropPrepared(): void {
  prepared?.streams.then(
    (sockets) => {
      for (const s of sockets) s.destroy();
    },
    () => {},
  );
  prepared = undefined;
}

function prepare(id: number): void {
  dropPrepared();
  // on a failure openStreams closes those that connected; the request then fails over to a direct spawn
  const streams = openStreams({ id, stdin: true });
  streams.catch(() => {});
  prepared = { id, streams };
}

/** The request's stdio connections: the prepared set when it was made for this request, else new ones. */
async function streamsFor(request: Request): Promise<Socket[]> {
  if (prepared?.id !== request.id) return openStreams(request);
  const { streams } = prepared;
  prepared = undefined;
  const sockets = await streams;
  if (request.stdin) return sockets;
  sockets[0]!.destroy();
  return sockets.slice(1);
}

async function handle(request: Request): Promise<void> {
  const { id } = request;
  let sockets: Socket[];
  try {
    sockets = await streamsFor(request);
  } catch (error) {
    send({ id, unavailable: failure(error) });
    return;
  }
  // A request the worker has given up on (this process was stuck: stopped, starved) must not start: nobody would
  // watch the command. Past its deadline (set short of the worker's own timeout), or once released, it does not.
  if (released || !process.connected || (request.deadline !== undefined && Date.now() > request.deadline)) {
    for (const s of sockets) s.destroy();
    send({ id, unavailable: { code: 'ETIMEDOUT', message: 'the request waited too long in the spawner' } });
    return;
  }
  const [stdout, stderr] = sockets.slice(-2) as [Socket, Socket];
  const stdin = request.stdin ? sockets[0]! : 'ignore';
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(request.file, request.args, {
      cwd: request.cwd,
      env: request.env,
      detached: request.detached,
      stdio: [stdin, stdout, stderr],
      ...(request.uid !== undefined ? { uid: request.uid } : {}),
      ...(request.gid !== undefined ? { gid: request.gid } : {}),
    });
  } catch (error) {
    send({ id, threw: failure(error) });
    return;
  } finally {
    // the child has its own copies (or there is no child): ours would keep the worker from seeing EOF
    for (const s of sockets) s.destroy();
  }
  if (child.pid === undefined) {
    child.once('error', (error) => send({ id, error: failure(error) }));
    return;
  }
  child.on('error', () => {}); // later errors (a failed kill) are not the worker's business: it signals pids itself
  send({ id, pid: child.pid });
  child.once('exit', (code, signal) => send({ id, exit: { code, signal } }));
}

/** The worker let this spawner go ({release: true}) and lives on; otherwise a disconnect means the worker is gone. */
let released = false;
process.on('message', (message: Request | { release: true } | { prepare: number }) => {
  if ('release' in message) {
    released = true;
    dropPrepared();
  } else if ('prepare' in message) prepare(message.prepare);
  else void handle(message);
});
process.on('disconnect', () => {
  // a worker that was killed could not remove its socket: do it for it (its folder holds nothing else)
  if (!released) {
    try {
      unlinkSync(socketPath);
      rmdirSync(dirname(socketPath));
    } catch {
      // already gone
    }
  }
  // running children are detached and live on, as with spawn() from a worker that exits
  process.exit(0);
});
