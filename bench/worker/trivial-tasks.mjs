#!/usr/bin/env node
// Issue 4 bench: N trivial tasks through `tcw start` (script engine, embedded local queue, the default plugin set)
// at capacity 1 and 4, side by side with spawning the same script N times directly (1 and 4 at a time).
//
//   node bench/worker/trivial-tasks.mjs [--tasks N] [--no-plugins] [--durability full|process]
//     [--queue-thread] [--queue-over-http]
//
// TCW_BENCH_LOG_LEVEL=debug also prints the mean time of each stage of a task run (from the worker's debug log).
//
// Per-task overhead = (worker wall time - direct wall time) / N at the same concurrency; tasks/s = N / wall time.
// The worker's time runs from the first createTask to the last task resolved, so it includes the queue's work
// (createTask, claimWork, the log upload, reportCompleted) done on the same 2 cores.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const require = createRequire(join(root, 'apps/worker/package.json'));
const tcModule = require('taskcluster-client');
const taskcluster = tcModule.default ?? tcModule;
const CLI = join(root, 'apps/worker/dist/cli.js');

const args = process.argv.slice(2);
const N = Number(args[args.indexOf('--tasks') + 1]) || 200;
const noPlugins = args.includes('--no-plugins');
// --queue-thread / --queue-over-http: the embedded queue's other modes (localQueue.thread / inProcess: false)
const queueThread = args.includes('--queue-thread');
const queueInProcess = !args.includes('--queue-over-http');
const durability = args.includes('--durability') ? args[args.indexOf('--durability') + 1] : 'full';
// the trivial task: reads its payload and exits 0 (a shell, so the baseline is not dominated by Node start-up)
const SCRIPT = ['/bin/sh', '-c', 'cat >/dev/null; echo ok'];

function direct(concurrency) {
  return new Promise((resolve, reject) => {
    let started = 0;
    let done = 0;
    const t0 = performance.now();
    const next = () => {
      if (started >= N) return;
      started++;
      const child = spawn(SCRIPT[0], SCRIPT.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
      child.stdout.resume();
      child.stderr.resume();
      child.stdin.end('{}');
      child.on('error', reject);
      child.on('exit', (code) => {
        if (code !== 0) return reject(new Error(`exit ${code}`));
        if (++done === N) resolve(performance.now() - t0);
        else next();
      });
    };
    for (let i = 0; i < concurrency; i++) next();
  });
}

async function throughWorker(capacity) {
  const dir = await mkdtemp(join(tmpdir(), 'tcw-bench-worker-'));
  const taskQueueId = `bench/cap${capacity}`;
  const config = {
    worker: {
      taskQueueId,
      workerGroup: 'bench',
      workerId: `cap${capacity}`,
      capacity,
      workDir: join(dir, 'work'),
    },
    localQueue: {
      stateDir: join(dir, 'queue'),
      port: 0,
      config: { durability },
      thread: queueThread,
      inProcess: queueInProcess,
    },
    engine: 'script',
    engines: { script: { command: SCRIPT, schema: { type: 'object', properties: {} } } },
    plugins: noPlugins ? { disabled: ['env', 'logprefix', 'maxruntime', 'artifacts', 'livelog'] } : {},
    logging: { level: process.env.TCW_BENCH_LOG_LEVEL ?? 'warn', pretty: false },
  };
  const path = join(dir, 'worker.json');
  await writeFile(path, JSON.stringify(config));
  const child = spawn(
    process.execPath,
    [...(process.env.TCW_BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []), CLI, 'start', '--config', path],
    {
      stdio: ['ignore', 'pipe', process.env.TCW_BENCH_LOG_LEVEL ? 'pipe' : 'inherit'],
    },
  );
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  // TCW_BENCH_LOG_LEVEL=debug: the worker's per-stage timings of every task, averaged below
  const timings = [];
  let errBuf = '';
  child.stderr?.on('data', (c) => {
    errBuf += c;
    const lines = errBuf.split('\n');
    errBuf = lines.pop();
    for (const line of lines) {
      if (line.includes('task run timings')) timings.push(JSON.parse(line).timings);
      else if (/"level":(4|5|6)0/.test(line)) process.stderr.write(`${line}\n`);
    }
  });
  while (!/TASKCLUSTER_ACCESS_TOKEN=/.test(out)) {
    if (child.exitCode !== null) throw new Error(`tcw start exited ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  process.once('exit', () => child.kill('SIGKILL'));
  const env = Object.fromEntries([...out.matchAll(/^export (\w+)='([^']*)'$/gm)].map((m) => [m[1], m[2]]));
  const queue = new taskcluster.Queue({
    rootUrl: env.TASKCLUSTER_ROOT_URL,
    credentials: { clientId: env.TASKCLUSTER_CLIENT_ID, accessToken: env.TASKCLUSTER_ACCESS_TOKEN },
  });
  const definition = () => ({
    taskQueueId,
    created: new Date().toJSON(),
    deadline: taskcluster.fromNowJSON('1 hour'),
    payload: {},
    metadata: {
      name: 'trivial',
      description: 'bench',
      owner: 'bench@example.com',
      source: 'https://example.com/bench',
    },
  });
  // warm up: one task through every stage
  const warm = taskcluster.slugid();
  await queue.createTask(warm, definition());
  await waitResolved(queue, warm);
  const ids = Array.from({ length: N }, () => taskcluster.slugid());
  const t0 = performance.now();
  for (let i = 0; i < ids.length; i += 16) {
    await Promise.all(ids.slice(i, i + 16).map((id) => queue.createTask(id, definition())));
  }
  // poll only the last task while the others run (status polls are HTTP requests the tcw process must serve),
  // then make sure of every one
  await waitResolved(queue, ids.at(-1), 25);
  for (const id of ids) await waitResolved(queue, id);
  const ms = performance.now() - t0;
  const statuses = await Promise.all(ids.map(async (id) => (await queue.status(id)).status));
  const states = new Set(statuses.map((s) => s.state));
  // where the time goes: claimed → resolved (the run) and resolved → next claimed (the gap), from the queue's clock
  const runs = statuses
    .map((s) => s.runs.at(-1))
    .sort((a, b) => Date.parse(a.started) - Date.parse(b.started));
  const runMs = runs.reduce((t, r) => t + Date.parse(r.resolved) - Date.parse(r.started), 0) / runs.length;
  const stages = {};
  for (const t of timings.slice(1)) for (const [k, v] of Object.entries(t)) stages[k] = (stages[k] ?? 0) + v;
  for (const k of Object.keys(stages)) stages[k] = +(stages[k] / Math.max(1, timings.length - 1)).toFixed(2);
  if (timings.length) console.log(`capacity ${capacity}: mean ms per stage`, stages);
  lastTimes = { runMs };
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await rm(dir, { recursive: true, force: true });
  if (states.size !== 1 || !states.has('completed'))
    throw new Error(`not all tasks completed: ${[...states]}`);
  return ms;
}

async function waitResolved(queue, taskId, pollMs = 10) {
  for (;;) {
    const { status } = await queue.status(taskId);
    if (status.state === 'completed' || status.state === 'failed' || status.state === 'exception') return;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

let lastTimes = {};
const rows = [];
for (const concurrency of [1, 4]) {
  const base = await direct(concurrency);
  const worker = await throughWorker(concurrency);
  rows.push({
    concurrency,
    'direct ms': base.toFixed(0),
    'tcw ms': worker.toFixed(0),
    'direct tasks/s': ((N / base) * 1000).toFixed(1),
    'tcw tasks/s': ((N / worker) * 1000).toFixed(1),
    'overhead ms/task': ((worker - base) / N).toFixed(2),
    ratio: (worker / base).toFixed(2),
    'run ms (claim→resolve)': lastTimes.runMs.toFixed(1),
  });
}
console.log(
  `${N} trivial tasks (${SCRIPT.join(' ')}), plugins: ${noPlugins ? 'none' : 'default set'}, queue durability ${durability}${queueThread ? ', queue on its own thread' : ''}${queueInProcess ? '' : ', queue over HTTP'}, node ${process.version}`,
);
console.table(rows);
