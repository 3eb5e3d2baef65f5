// The engine conformance suite against the real native engine: real processes, and (as root on Linux, as in CI
// here) a real per-task user and a real cgroup per task. The suite makes temp dirs (work dirs, logs, volumes) it
// does not remove: TMPDIR points at a folder of this file's own, removed in afterAll.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeEngineConformance } from '@tcw/testing';
import { afterAll } from 'vitest';
import { createNativeEngine, proxyEnvName } from '../src/index.js';

const privateTmp = mkdtempSync(join(tmpdir(), 'tcw-native-conformance-'));
process.env.TMPDIR = privateTmp;
const engines: Array<{ dispose?: () => Promise<void> }> = [];
afterAll(async () => {
  for (const engine of engines) await engine.dispose?.();
  rmSync(privateTmp, { recursive: true, force: true });
});

const writeFilesScript =
  'while [ $# -gt 0 ]; do mkdir -p "$(dirname "$1")"; printf %s "$2" > "$1"; shift 2; done';

describeEngineConformance({
  name: 'native',
  createEngine: () => {
    const engine = createNativeEngine();
    engines.push(engine);
    return engine;
  },
  volumeMountPoint: 'cache',
  payloads: {
    exit: (code) => ({ command: ['sh', '-c', `exit ${code}`] }),
    print: (text) => ({ command: ['echo', text] }),
    printError: (text) => ({ command: ['sh', '-c', 'echo "$1" >&2', 'sh', text] }),
    sleep: (ms) => ({ command: ['sh', '-c', `sleep ${ms / 1000} & wait`] }),
    printEnv: (name) => ({ command: ['printenv', name] }),
    writeFiles: (files) => ({
      command: ['sh', '-c', writeFilesScript, 'sh', ...Object.entries(files).flat()],
    }),
    readVolume: (mountPoint, file) => ({ command: ['cat', `${mountPoint}/${file}`] }),
    fetchProxy: (name) => ({
      command: [
        process.execPath,
        '-e',
        `fetch(process.env.${proxyEnvName(name)} + '/ping').then((r) => r.text()).then((t) => console.log(t))`,
      ],
    }),
  },
});
