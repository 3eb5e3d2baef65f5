#!/usr/bin/env node
// Issue 4 bench: N trivial tasks through `tcw start` (script engine, embedded local queue, the default plugin set)
// at capacity 1 and 4, side by side with spawning the same script N times directly (1 and 4 at a time).
//
//   node bench/worker/trivial-tasks.mjs [--tasks N] [--no-plugins] [--durability full|process]
//     [--queue-thread] [--queue-over-http] [--submit-live] [--cpu] [--rounds R]
//
// TCW_BENCH_LOG_LEVEL=debug also prints the mean time of each stage of a task run (from the worker's debug log).
//
// Per-task overhead = (worker wall time - direct wall time) / N at the same concurrency; tasks/s = N / wall time.
// By default the N tasks (and 8 warm-up tasks ahead of them) are created with taskcluster-client before the worker
// starts, and the worker's time runs, on the queue's clock, from the first measured claim to the last resolution:
// the worker's whole job (claimWork, the run, the log upload, reportCompleted, the embedded queue's commits) and
// nothing of the submitter's. --submit-live creates them over HTTP from this process while the worker runs (the
// submitter then shares the same 2 cores) and times from the first createTask.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
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
const { startLocalQueue, suppressSqliteExperimentalWarning } = await import(
  new URL('../../packages/local-queue/dist/index.js', import.meta.url)
);
suppressSqliteExperimentalWarning();

const args = process.argv.slice(2);
const N = Number(args[args.indexOf('--tasks') + 1]) || 200;
const noPlugins = args.includes('--no-plugins');
// --queue-thread / --queue-over-http: the embedded queue's other modes (localQueue.thread / inProcess: false)
const queueThread = args.includes('--queue-thread');
const queueInProcess = !args.includes('--queue-over-http');
// --cpu: CPU time used while the N tasks ran, per process name (from /proc; children count under their reaper)
const cpu = args.includes('--cpu');
// --submit-live: create the tasks (over HTTP, from this process) while the worker runs, and time from the first
// createTask; by default they are all created before the worker starts (a backlog) and timed by the queue's clock
const submitLive = args.includes('--submit-live');
// --rounds R: baseline and worker side by side R times; the table shows medians (and ranges)
const ROUNDS = Number(args[args.indexOf('--rounds') + 1]) || 3;
// warm-up tasks ahead of the measured ones (the first tasks load code and compile the payload schema)
const WARM = 8;
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
  const warmIds = Array.from({ length: WARM }, () => taskcluster.slugid());
  const ids = Array.from({ length: N }, () => taskcluster.slugid());
  const createAll = async (queue, list) => {
    for (let i = 0; i < list.length; i += 16) {
      await Promise.all(list.slice(i, i + 16).map((id) => queue.createTask(id, definition())));
    }
  };
  if (!submitLive) {
    // the backlog: every task is created (with taskcluster-client over HTTP) in the queue's state directory before
    // the worker starts, so the measured window holds only the worker's work (claim, run, upload, resolve)
    const q = await startLocalQueue({ stateDir: join(dir, 'queue'), port: 0, config: { durability } });
    const queue = new taskcluster.Queue({ rootUrl: q.rootUrl, credentials: q.rootCredentials });
    await createAll(queue, [...warmIds, ...ids]);
    await q.close();
  }
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
  let ms;
  let cpu0;
  let cpu1;
  if (submitLive) {
    // warm up: tasks through every stage, then the clock runs from the first createTask to the last resolution
    await createAll(queue, warmIds);
    for (const id of warmIds) await waitResolved(queue, id);
    cpu0 = cpu ? cpuSnapshot() : undefined;
    const t0 = performance.now();
    await createAll(queue, ids);
    // poll only the last task while the others run (status polls are HTTP requests the tcw process must serve),
    // then make sure of every one
    await waitResolved(queue, ids.at(-1), 25);
    cpu1 = cpu0 && cpuSnapshot();
    for (const id of ids) await waitResolved(queue, id);
    ms = performance.now() - t0;
  } else {
    for (const id of warmIds) await waitResolved(queue, id, 5);
    cpu0 = cpu ? cpuSnapshot() : undefined;
    // the queue's clock: from the first measured task's claim to the last one's resolution (polls are rare, so
    // they cost the worker little, and they do not move the clock)
    await waitResolved(queue, ids.at(-1), 200);
    cpu1 = cpu0 && cpuSnapshot();
    for (const id of ids) await waitResolved(queue, id);
  }
  // (the CPU window ends when the last task is resolved, before the status checks of every task)
  if (cpu0) printCpu(capacity, cpu0, cpu1);
  const statuses = await Promise.all(ids.map(async (id) => (await queue.status(id)).status));
  const states = new Set(statuses.map((s) => s.state));
  // where the time goes: claimed → resolved (the run) and resolved → next claimed (the gap), from the queue's clock
  const runs = statuses
    .map((s) => s.runs.at(-1))
    .sort((a, b) => Date.parse(a.started) - Date.parse(b.started));
  if (!submitLive) {
    ms = Math.max(...runs.map((r) => Date.parse(r.resolved))) - Date.parse(runs[0].started);
  }
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

// utime+stime (and cutime+cstime, the reaped children's) of every process, in ms (clock ticks are 10 ms on Linux);
// this process's own figure is its CPU until the snapshot starts (the snapshot's reads are not counted)
function cpuSnapshot() {
  const out = new Map();
  const own = process.cpuUsage();
  out.set('self', { comm: 'bench', ms: (own.user + own.system) / 1000 });
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || pid === String(process.pid)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    if (!stat) continue;
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const own = (Number(f[11]) + Number(f[12])) * 10;
    const children = (Number(f[13]) + Number(f[14])) * 10;
    let name = comm;
    if (comm === 'node') {
      let cmdline = '';
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {}
      name = /spawner/.test(cmdline) ? 'spawner' : /cli\.js/.test(cmdline) ? 'tcw' : comm;
    }
    out.set(pid, { comm: name, ms: own });
    out.set(`${pid}+children`, { comm: `${name} (reaped children)`, ms: children });
  }
  return out;
}

function printCpu(capacity, before, after) {
  const byName = {};
  for (const [pid, { comm, ms }] of after) {
    const d = ms - (before.get(pid)?.ms ?? 0);
    if (d > 0) byName[comm] = (byName[comm] ?? 0) + d;
  }
  const total = Object.values(byName).reduce((a, b) => a + b, 0);
  const perTask = Object.fromEntries(
    Object.entries(byName)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => [k, +(v / N).toFixed(2)]),
  );
  console.log(`capacity ${capacity}: CPU ms per task (total ${(total / N).toFixed(2)})`, perTask);
}

async function waitResolved(queue, taskId, pollMs = 10) {
  for (;;) {
    const { status } = await queue.status(taskId);
    if (status.state === 'completed' || status.state === 'failed' || status.state === 'exception') return;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

let lastTimes = {};
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const range = (xs, digits) => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
// rounds: this machine's speed drifts from one second to the next, so each round runs the baseline and the worker
// side by side, and the table gives the median round (and the range over rounds)
const results = { 1: [], 4: [] };
for (let round = 0; round < ROUNDS; round++) {
  for (const concurrency of [1, 4]) {
    const base = await direct(concurrency);
    const worker = await throughWorker(concurrency);
    results[concurrency].push({ base, worker, runMs: lastTimes.runMs });
  }
}
const rows = [1, 4].map((concurrency) => {
  const r = results[concurrency];
  const tasksPerS = r.map((x) => (N / x.worker) * 1000);
  const overhead = r.map((x) => (x.worker - x.base) / N);
  return {
    concurrency,
    'direct tasks/s': median(r.map((x) => (N / x.base) * 1000)).toFixed(1),
    'tcw tasks/s': median(tasksPerS).toFixed(1),
    'tcw tasks/s range': range(tasksPerS, 1),
    'overhead ms/task': median(overhead).toFixed(2),
    'overhead range': range(overhead, 2),
    ratio: median(r.map((x) => x.worker / x.base)).toFixed(2),
    'run ms (claim→resolve)': median(r.map((x) => x.runMs)).toFixed(1),
  };
});
console.log(
  `${N} trivial tasks × ${ROUNDS} rounds (${SCRIPT.join(' ')}), plugins: ${noPlugins ? 'none' : 'default set'}, queue durability ${durability}, ${submitLive ? 'tasks submitted over HTTP while the worker runs (clock from the first createTask)' : 'tasks queued before the worker starts (clock from the first claim to the last resolution)'}${queueThread ? ', queue on its own thread' : ''}${queueInProcess ? '' : ', queue over HTTP'}, node ${process.version}`,
);
console.table(rows);
