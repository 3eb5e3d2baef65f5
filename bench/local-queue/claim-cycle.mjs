// Bench: createTask → claimWork → reportCompleted cycles per second through taskcluster-client@87.1.3 over real
// HTTP on 127.0.0.1, with 0, 10,000 and 100,000 pending tasks in other queues and in the same queue.
// Usage (after `pnpm build`): node bench/local-queue/claim-cycle.mjs [--cycles N] [--sizes 0,10000,100000]
//   [--durability full|process]
// Bounded: every scenario runs a fixed number of cycles against a queue on this machine, then stops.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const pkgRequire = createRequire(new URL('../../packages/local-queue/package.json', import.meta.url));
const { startLocalQueue, suppressSqliteExperimentalWarning } = await import(
  new URL('../../packages/local-queue/dist/index.js', import.meta.url)
);
const { default: taskcluster } = await import(pathToFileURL(pkgRequire.resolve('taskcluster-client')).href);

suppressSqliteExperimentalWarning();
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const CYCLES = Number(opt('cycles', '300'));
const SIZES = opt('sizes', '0,10000,100000').split(',').map(Number);
const DURABILITY = opt('durability', 'full');

const WORKER = {
  clientId: 'bench/worker',
  accessToken: 'bench-worker-token-0123456789abcdefghijklmnop',
  scopes: ['queue:claim-work:bench/*', 'queue:worker-id:bench/*'],
};

function def(taskQueueId) {
  return {
    taskQueueId,
    created: new Date().toJSON(),
    deadline: taskcluster.fromNowJSON('2 hours'),
    payload: {},
    metadata: {
      name: 'bench',
      description: 'claim-cycle bench',
      owner: 'bench@example.com',
      source: 'https://example.com/bench',
    },
  };
}

async function scenario(backlog, where, cycles = CYCLES) {
  const dir = mkdtempSync(join(tmpdir(), 'local-queue-bench-'));
  const q = await startLocalQueue({
    stateDir: dir,
    config: { clients: [WORKER], claimWorkTimeout: 5, durability: DURABILITY },
  });
  try {
    let insertMs = 0;
    if (backlog > 0) {
      const t0 = performance.now();
      // other queues: spread over 100 queues that nobody claims from; same queue: the queue the cycle claims from
      const chunk = 10_000;
      for (let done = 0; done < backlog; done += chunk) {
        const n = Math.min(chunk, backlog - done);
        if (where === 'other') {
          for (let k = 0; k < 10; k++)
            await q.createTasks(n / 10, { taskQueueId: `bench/other-${(done / chunk) % 10}${k}` });
        } else {
          await q.createTasks(n, { taskQueueId: 'bench/cycle' });
        }
      }
      insertMs = performance.now() - t0;
    }
    const opts = { rootUrl: q.rootUrl, retries: 0 };
    const root = new taskcluster.Queue({ ...opts, credentials: q.rootCredentials });
    const worker = new taskcluster.Queue({ ...opts, credentials: WORKER });
    const claimMs = [];
    const cycle = async () => {
      await root.createTask(taskcluster.slugid(), def('bench/cycle'));
      const t = performance.now();
      const { tasks } = await worker.claimWork('bench/cycle', {
        workerGroup: 'bench',
        workerId: 'w1',
        tasks: 1,
      });
      claimMs.push(performance.now() - t);
      if (tasks.length !== 1) throw new Error('claimWork returned no task');
      const c = tasks[0];
      await new taskcluster.Queue({ ...opts, credentials: c.credentials }).reportCompleted(
        c.status.taskId,
        c.runId,
      );
    };
    for (let i = 0; i < 20; i++) await cycle(); // warm-up
    const t0 = performance.now();
    claimMs.length = 0;
    for (let i = 0; i < cycles; i++) await cycle();
    const ms = performance.now() - t0;
    claimMs.sort((a, b) => a - b);
    const claimMedian = claimMs[Math.floor(claimMs.length / 2)];
    return {
      backlog,
      where,
      cyclesPerSec: (cycles / ms) * 1000,
      msPerCycle: ms / cycles,
      claimMedian,
      insertMs,
    };
  } finally {
    await q.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows = [];
await scenario(0, 'none', 200); // discarded: warms up the JIT of the client, the server and SQLite
for (const size of SIZES) {
  for (const where of size === 0 ? ['none'] : ['other', 'same']) {
    const r = await scenario(size, where);
    rows.push(r);
    console.error(`backlog ${size} (${where}): ${r.cyclesPerSec.toFixed(0)} cycles/s`);
  }
}
console.log(
  `Node ${process.version}, durability ${DURABILITY}, ${CYCLES} cycles per scenario (after a discarded warm-up scenario and 20 warm-up cycles each)\n`,
);
console.log(
  '| pending tasks | where | cycles/s | ms/cycle | claimWork median ms | bulk insert of the backlog |',
);
console.log('| ---: | --- | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  console.log(
    `| ${r.backlog.toLocaleString('en-US')} | ${r.where === 'none' ? '—' : `${r.where} queue${r.where === 'other' ? 's' : ''}`} | ${r.cyclesPerSec.toFixed(0)} | ${r.msPerCycle.toFixed(2)} | ${r.claimMedian.toFixed(2)} | ${r.insertMs ? `${(r.insertMs / 1000).toFixed(1)} s` : '—'} |`,
  );
}
