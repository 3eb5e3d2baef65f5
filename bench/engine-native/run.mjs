// Bench: a trivial native task (`true`) through @tcw/engine-native vs spawning the same command directly.
// Usage (after `pnpm build`): node bench/engine-native/run.mjs [iterations]
// Each engine figure is one whole task: newSandboxBuilder → start → wait → dispose (task dir, user, cgroup made and
// removed). No queue, no plugins: the worker loop's own costs are measured elsewhere.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNativeEngine } from '../../packages/engine-native/dist/index.js';

const iterations = Number(process.argv[2] ?? 30);
const isRoot = process.getuid?.() === 0;

const log = { write() {}, info() {}, warn() {}, error() {}, addSecret() {} };
const logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => logger };

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { median: at(0.5), p90: at(0.9), min: s[0] };
}

async function time(fn) {
  for (let i = 0; i < 3; i++) await fn(); // warm-up
  const samples = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return stats(samples);
}

const direct = () =>
  new Promise((resolve, reject) => {
    const child = spawn('true', [], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.once('error', reject);
    child.once('exit', resolve);
  });

async function engineRunner(options) {
  const workDir = await mkdtemp(join(tmpdir(), 'tcw-bench-native-'));
  const engine = createNativeEngine(options);
  await engine.init({
    logger,
    worker: { taskQueueId: 'bench/native', workerGroup: 'g', workerId: 'w' },
    workDir,
  });
  let n = 0;
  const task = async () => {
    const builder = await engine.newSandboxBuilder({
      task: { taskId: `bench${n++}`, runId: 0, task: {}, worker: {}, rootUrl: 'http://localhost' },
      payload: { command: ['true'] },
      log,
      signal: new AbortController().signal,
      logger,
      artifacts: {},
    });
    const sandbox = await builder.start();
    const result = await sandbox.wait();
    if (!result.success) throw new Error('the bench task failed');
    await result.dispose();
  };
  return {
    task,
    async close() {
      await engine.dispose();
      await rm(workDir, { recursive: true, force: true });
    },
  };
}

const cases = [['spawn `true` directly (child_process.spawn)', null]];
if (isRoot) {
  cases.push(
    ['engine: per-task user + cgroup (default as root)', { user: 'per-task' }],
    ['engine: worker user + cgroup', { user: 'current', allowRoot: true }],
    [
      'engine: worker user, cgroups off (PID namespace)',
      { user: 'current', allowRoot: true, cgroups: 'off' },
    ],
  );
} else {
  cases.push(['engine: worker user (process group)', { user: 'current' }]);
}

const rows = [];
for (const [name, options] of cases) {
  if (!options) {
    rows.push([name, await time(direct)]);
    continue;
  }
  const runner = await engineRunner(options);
  try {
    rows.push([name, await time(runner.task)]);
  } finally {
    await runner.close();
  }
}

const f = (ms) => `${ms.toFixed(1)} ms`;
console.log(
  `${iterations} runs each, node ${process.version}, ${process.platform} ${isRoot ? '(root)' : ''}`,
);
console.log('| case | median | p90 | min |');
console.log('|---|---|---|---|');
for (const [name, s] of rows) console.log(`| ${name} | ${f(s.median)} | ${f(s.p90)} | ${f(s.min)} |`);
