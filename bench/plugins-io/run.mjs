#!/usr/bin/env node
// Bench for @tcw/plugin-livelog and @tcw/plugin-artifacts (build first: pnpm build).
//
//   node bench/plugins-io/run.mjs [--lines 1000] [--interval-ms 2] [--size-mb 256] [--rounds 3]
//
// 1. Live log latency: a task's log writer (the path an engine writes stdout through) writes numbered lines
//    stamped with the time; an HTTP reader on the live log URL records when each line arrives.
//    Reports p50/p99/max of (read time − write time). Target: p99 ≤ 50 ms.
// 2. Artifact upload throughput: the same file uploaded (a) by a plain loopback HTTP PUT (node:http, streamed
//    from disk) and (b) through ArtifactUploader (the artifacts plugin's path: hashing, retries, object
//    protocol), to the same loopback sink that drops the bytes. Random (incompressible) data, plus a text file
//    that the uploader gzips.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer, get, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';

const root = new URL('../../packages/', import.meta.url);
const core = await import(new URL('core/dist/index.js', root).href);
const testing = await import(new URL('testing/dist/index.js', root).href);
const { livelog, LIVE_LOG_NAME } = await import(new URL('plugin-livelog/dist/index.js', root).href);

const { values: args } = parseArgs({
  options: {
    lines: { type: 'string', default: '1000' },
    'interval-ms': { type: 'string', default: '2' },
    'size-mb': { type: 'string', default: '256' },
    rounds: { type: 'string', default: '3' },
  },
});

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const fmt = (n) => n.toFixed(2);

// ------------------------------------------------------------------ live log latency
async function liveLogLatency(lines, intervalMs) {
  let release;
  const released = new Promise((r) => {
    release = r;
  });
  let reached;
  const started = new Promise((r) => {
    reached = r;
  });
  const gate = {
    specificationVersion: 'v1',
    name: 'bench-gate',
    taskPlugin: () => ({
      async started(ctx) {
        reached(ctx);
        await released;
      },
    }),
  };
  const plugin = livelog();
  const tw = await testing.startTestWorker({ plugins: [plugin, gate] });
  const taskId = tw.submit({ mock: { log: 'bench start' } });
  const ctx = await started;
  const url = tw.queue.artifacts(taskId, 0).get(LIVE_LOG_NAME).url;

  const latencies = [];
  const done = new Promise((resolve, reject) => {
    get(url, (res) => {
      let buffered = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        const now = performance.now();
        buffered += chunk;
        let nl = buffered.indexOf('\n');
        while (nl >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          const m = /^bench (\d+) (\d+\.\d+)$/.exec(line);
          if (m) {
            latencies.push(now - Number(m[2]));
            if (Number(m[1]) === lines - 1) resolve();
          }
          nl = buffered.indexOf('\n');
        }
      });
      res.on('error', reject);
    }).on('error', reject);
  });
  await new Promise((r) => setTimeout(r, 100)); // the reader is attached
  for (let i = 0; i < lines; i++) {
    ctx.log.write(`bench ${i} ${performance.now().toFixed(3)}\n`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  await done;
  release();
  await tw.result(taskId);
  await tw.stop();
  latencies.sort((a, b) => a - b);
  return {
    lines: latencies.length,
    p50: pct(latencies, 50),
    p99: pct(latencies, 99),
    max: latencies.at(-1),
  };
}

// ------------------------------------------------------------------ upload throughput
async function makeFile(path, sizeBytes, kind) {
  const chunk = 1024 * 1024;
  const out = createWriteStream(path);
  let line = 0;
  async function* gen() {
    for (let left = sizeBytes; left > 0; left -= chunk) {
      const n = Math.min(chunk, left);
      if (kind === 'random') yield randomBytes(n);
      else {
        let text = '';
        while (text.length < n) text += `[taskcluster 2026-11-30T00:00:00.000Z] build step ${line++} ok\n`;
        yield Buffer.from(text.slice(0, n));
      }
    }
  }
  await pipeline(gen, out);
}

function startSink() {
  const server = createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => res.writeHead(200).end());
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, url: `http://127.0.0.1:${server.address().port}/o` }),
    ),
  );
}

async function plainPut(url, path) {
  const { size } = await stat(path);
  await new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'PUT', headers: { 'Content-Length': size, 'Content-Type': 'application/octet-stream' } },
      (res) => {
        res.resume();
        res.on('end', resolve);
      },
    );
    req.on('error', reject);
    createReadStream(path).pipe(req);
  });
}

function uploaderFor(sinkUrl, tempDir) {
  const queue = {
    rootUrl: 'http://queue.invalid',
    async createArtifact(_t, _r, name, req) {
      return {
        storageType: 'object',
        name,
        projectId: 'p',
        uploadId: 'u',
        expires: req.expires,
        credentials: { clientId: 'c', accessToken: 'a' },
      };
    },
    async createUpload(_n, req) {
      return {
        projectId: 'p',
        uploadId: 'u',
        expires: req.expires,
        uploadMethod: { putUrl: { url: sinkUrl, expires: req.expires, headers: {} } },
      };
    },
    async finishUpload() {},
    async finishArtifact() {},
  };
  return new core.ArtifactUploader({
    queue,
    taskId: 't',
    runId: 0,
    credentials: () => ({ clientId: 'c', accessToken: 'a' }),
    taskExpires: new Date(Date.now() + 86_400_000).toJSON(),
    tempDir,
  });
}

async function timeIt(fn) {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

async function uploadThroughput(sizeMb, rounds) {
  const dir = await mkdtemp(join(tmpdir(), 'tcw-bench-io-'));
  const sink = await startSink();
  const rows = [];
  try {
    for (const [kind, name] of [
      ['random', 'data.bin'],
      ['text', 'build.log'],
    ]) {
      const path = join(dir, name);
      await makeFile(path, sizeMb * 1024 * 1024, kind);
      const uploader = uploaderFor(sink.url, dir);
      const plain = [];
      const tcw = [];
      let encoding = '';
      for (let i = 0; i < rounds; i++) {
        plain.push(await timeIt(() => plainPut(sink.url, path)));
        tcw.push(
          await timeIt(async () => {
            const done = await uploader.uploadFile({ name: `public/${name}`, path });
            encoding = done.contentEncoding;
          }),
        );
      }
      await uploader.dispose();
      const best = (xs) => Math.min(...xs);
      rows.push({
        file: `${name} (${kind}, ${sizeMb} MiB)`,
        plainMBs: sizeMb / best(plain),
        tcwMBs: sizeMb / best(tcw),
        encoding,
      });
      await rm(path, { force: true });
    }
  } finally {
    sink.server.close();
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}

// ------------------------------------------------------------------ main
const lines = Number(args.lines);
const intervalMs = Number(args['interval-ms']);
const sizeMb = Number(args['size-mb']);
const rounds = Number(args.rounds);

console.log(`# plugins-io bench — node ${process.version}, ${new Date().toISOString()}`);
const ll = await liveLogLatency(lines, intervalMs);
console.log(`\n## Live log latency (write → HTTP reader), ${ll.lines} lines, one every ${intervalMs} ms`);
console.log(
  `p50 ${fmt(ll.p50)} ms   p99 ${fmt(ll.p99)} ms   max ${fmt(ll.max)} ms   (target p99 ≤ 50 ms: ${ll.p99 <= 50 ? 'met' : 'NOT met'})`,
);

const up = await uploadThroughput(sizeMb, rounds);
console.log(`\n## Artifact upload throughput (best of ${rounds}), loopback sink`);
console.log('| file | plain HTTP PUT | ArtifactUploader | ratio | encoding |');
console.log('|---|---|---|---|---|');
for (const r of up) {
  console.log(
    `| ${r.file} | ${fmt(r.plainMBs)} MiB/s | ${fmt(r.tcwMBs)} MiB/s | ${fmt(r.tcwMBs / r.plainMBs)} | ${r.encoding} |`,
  );
}
