// The engine conformance suite against a real dockerd (scripts/ci-system-deps.sh starts one), for every capability
// the docker engine declares: env, volumes, proxies, extract (files is not covered by the suite; see
// docker-engine.test.ts).
import { describeEngineConformance } from '@tcw/testing';
import { engine, IMAGE, sh } from './helpers.js';

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

describeEngineConformance({
  name: 'docker',
  createEngine: () => engine(),
  artifactPath: (rel) => `/work/${rel}`,
  payloads: {
    exit: (code) => sh(`exit ${code}`),
    print: (text) => ({ image: IMAGE, command: ['echo', text] }),
    printError: (text) => sh('echo "$1" >&2', text),
    sleep: (ms) => sh(`sleep ${Math.ceil(ms / 1000)} & wait`),
    printEnv: (name) => sh(`echo "$${name}"`),
    writeFiles: (files) =>
      sh(
        Object.entries(files)
          .map(([rel, content]) => {
            const path = `/work/${rel}`;
            return `mkdir -p "$(dirname ${quote(path)})" && printf %s ${quote(content)} > ${quote(path)}`;
          })
          .join(' && '),
      ),
    readVolume: (mountPoint, file) => ({ image: IMAGE, command: ['cat', `${mountPoint}/${file}`] }),
    fetchProxy: (name) => sh(`wget -qO- "$TCW_PROXY_${name.toUpperCase()}/ping"`),
  },
});
