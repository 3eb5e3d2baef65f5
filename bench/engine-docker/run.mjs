// A trivial container task through @tcw/engine-docker (newSandboxBuilder → start → wait → dispose: image lookup,
// create, attach, start, wait, remove; output into a task log file) against `docker run --rm` of the same image and
// command, alternated, on the same dockerd.
// Usage (after `pnpm build`): node_modules/.bin/node bench/engine-docker/run.mjs [iterations]
// Needs a running dockerd and the test image (scripts/build-test-images.sh).
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { silentLogger, TaskLog } from '../../packages/core/dist/index.js';
import { createDockerEngine } from '../../packages/engine-docker/dist/index.js';

const run = promisify(execFile);
const image = process.env.TCW_TEST_IMAGE ?? 'tcw-test/busybox:latest';
const command = ['echo', 'hello'];
const iterations = Number(process.argv[2] ?? 20);

async function viaDockerCli() {
  const t0 = performance.now();
  const { stdout } = await run('docker', ['run', '--rm', image, ...command]);
  if (!stdout.includes('hello')) throw new Error('docker run printed nothing');
  return performance.now() - t0;
}

const engine = createDockerEngine();
await engine.checkDaemon();
const task = {
  taskId: 'bench',
  runId: 0,
  rootUrl: 'http://127.0.0.1:1',
  worker: { taskQueueId: 'bench/docker', workerGroup: 'bench', workerId: 'bench' },
  task: { scopes: [] },
};
// what the worker does per task with the engine: a task log file, build, start, wait (output into the log), remove
async function viaTcw() {
  const dir = await mkdtemp(join(tmpdir(), 'tcw-bench-'));
  const log = TaskLog.create(join(dir, 'live.log'));
  const t0 = performance.now();
  const builder = await engine.newSandboxBuilder({
    task,
    payload: { image, command },
    log,
    signal: new AbortController().signal,
    logger: silentLogger,
  });
  const result = await (await builder.start()).wait();
  if (!result.success) throw new Error('task failed');
  await result.dispose();
  const elapsed = performance.now() - t0;
  await log.close();
  await rm(dir, { recursive: true, force: true });
  return elapsed;
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const median = s[Math.floor(s.length / 2)];
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return { median, mean, min: s[0], max: s.at(-1) };
};

// warm-up (image cache, client connections)
await viaDockerCli();
await viaTcw();
const cli = [];
const tcw = [];
for (let i = 0; i < iterations; i++) {
  cli.push(await viaDockerCli());
  tcw.push(await viaTcw());
}
const a = stats(cli);
const b = stats(tcw);
const fmt = (n) => `${n.toFixed(0)} ms`;
console.log(`trivial task (${image} ${command.join(' ')}), ${iterations} runs each, alternated`);
console.log('                    median    mean     min     max');
console.log(`docker run --rm   ${[a.median, a.mean, a.min, a.max].map((n) => fmt(n).padStart(8)).join('')}`);
console.log(`tcw engine-docker ${[b.median, b.mean, b.min, b.max].map((n) => fmt(n).padStart(8)).join('')}`);
console.log(`ratio tcw / docker run (median): ${(b.median / a.median).toFixed(2)}×  (target ≤ 1.10×)`);
