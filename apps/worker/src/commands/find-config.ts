import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '@tcw/core';

/** The config file: `--config`, else `./tcw.yml`, else `$XDG_CONFIG_HOME/tcw/worker.yml`. */
export async function findConfig(given: string | undefined, env: NodeJS.ProcessEnv): Promise<string> {
  if (given) return given;
  const candidates = [
    'tcw.yml',
    'tcw.yaml',
    join(env.XDG_CONFIG_HOME || join(env.HOME ?? '', '.config'), 'tcw', 'worker.yml'),
  ];
  for (const candidate of candidates) {
    try {
      await access(candidate);
      return candidate;
    } catch {
      // next
    }
  }
  throw new ConfigError(
    `no config file: pass --config FILE, or create ./tcw.yml (see examples/script-engine/worker.yml)`,
  );
}
