import { PassThrough, type Writable } from 'node:stream';
import taskcluster from 'taskcluster-client';

type QueueClient = InstanceType<typeof taskcluster.Queue>;

export type FinalState = 'completed' | 'failed' | 'exception';

export interface FollowOptions {
  queue: QueueClient;
  taskId: string;
  /** Where the log goes (stdout). */
  out: Writable;
  /** Status poll interval (default 250 ms). */
  pollMs?: number;
  signal?: AbortSignal;
}

export interface FollowResult {
  state: FinalState;
  runId: number;
  reasonResolved?: string;
}

const LIVE_LOG = 'public/logs/live.log';
const BACKING_LOG = 'public/logs/live_backing.log';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function writeTo(out: Writable, chunk: Uint8Array | string): Promise<void> {
  return new Promise((resolve) => {
    if (out.write(chunk)) resolve();
    else out.once('drain', () => resolve());
  });
}

async function streamUrl(url: string, out: Writable, signal?: AbortSignal): Promise<boolean> {
  const res = await fetch(url, signal ? { signal } : {});
  if (!res.ok || !res.body) return false;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) await writeTo(out, chunk);
  return true;
}

async function printBackingLog(
  queue: QueueClient,
  taskId: string,
  runId: number,
  out: Writable,
): Promise<boolean> {
  const pass = new PassThrough();
  pass.on('data', (chunk: Buffer) => out.write(chunk));
  try {
    await taskcluster.downloadArtifact({
      taskId,
      runId,
      name: BACKING_LOG,
      queue,
      streamFactory: () => pass,
    });
    return true;
  } catch {
    return false;
  }
}

/**
 * Streams a task's log to `out` until it resolves: the live log while it runs (livelog), otherwise the uploaded
 * backing log once a run ends. Follows automatic retries (a new run). Returns the final state.
 */
export async function followTask(options: FollowOptions): Promise<FollowResult> {
  const { queue, taskId, out } = options;
  const pollMs = options.pollMs ?? 250;
  const printed = new Set<number>();
  for (;;) {
    if (options.signal?.aborted) throw new Error('follow aborted');
    const { status } = await queue.status(taskId);
    const run = status.runs[status.runs.length - 1] as
      | { runId: number; state: string; reasonResolved?: string }
      | undefined;
    if (!run || run.state === 'pending') {
      await sleep(pollMs);
      continue;
    }
    if (run.state === 'running' && !printed.has(run.runId)) {
      let live: { storageType: string; url?: string } | undefined;
      try {
        live = await queue.artifact(taskId, String(run.runId), LIVE_LOG);
      } catch {
        live = undefined;
      }
      if (live?.storageType === 'reference' && live.url) {
        printed.add(run.runId);
        try {
          await streamUrl(live.url, out, options.signal);
        } catch {
          printed.delete(run.runId);
          await sleep(pollMs * 4);
        }
        continue;
      }
      await sleep(pollMs);
      continue;
    }
    if (run.state !== 'running') {
      if (!printed.has(run.runId)) {
        printed.add(run.runId);
        if (!(await printBackingLog(queue, taskId, run.runId, out))) {
          out.write(`[tcw] no log was uploaded for run ${run.runId}\n`);
        }
      }
      if (status.state === 'pending' || status.state === 'running') continue;
      const result: FollowResult = { state: run.state as FinalState, runId: run.runId };
      if (run.reasonResolved) result.reasonResolved = run.reasonResolved;
      return result;
    }
    await sleep(pollMs);
  }
}

/** Process exit code for a final state: 0 completed, 1 failed, 2 exception. */
export function exitCodeFor(state: FinalState): number {
  return state === 'completed' ? 0 : state === 'failed' ? 1 : 2;
}
