import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '@tcw/core';
import taskcluster from 'taskcluster-client';
import { parse as parseYaml } from 'yaml';
import { workerConfigSchema } from './schema.js';
import { applyEnvTransforms, applySecretTransforms } from './transforms.js';
import { validateAgainst } from './validate.js';

export interface WorkerSection {
  taskQueueId?: string;
  provisionerId?: string;
  workerType?: string;
  workerGroup?: string;
  workerId?: string;
  capacity?: number;
  workDir?: string;
  shutdownGracePeriod?: number;
  abortGracePeriod?: number;
  cancelPollInterval?: number;
  hookTimeout?: number;
  uploadConcurrency?: number;
  /** MiB (default 1024, 0: no limit): a task log keeps this much from its start, then only its last MiB. */
  maxLogSize?: number;
  /** MiB (default 64): claim only while the work folder has this much free space. */
  minFreeSpace?: number;
}

export interface WorkerConfig {
  rootUrl?: string;
  credentials?: { clientId: string; accessToken: string; certificate?: string | object };
  worker?: WorkerSection;
  localQueue?: {
    stateDir?: string;
    host?: string;
    port?: number;
    publicUrl?: string;
    config?: Record<string, unknown>;
    inProcess?: boolean;
    thread?: boolean;
  };
  engine: string;
  engines?: Record<string, Record<string, unknown>>;
  plugins?: { disabled?: string[] } & Record<string, unknown>;
  logging?: { level?: string; pretty?: boolean };
}

export interface LoadedConfig {
  config: WorkerConfig;
  /** The file it came from. */
  path: string;
  /** Its folder: relative paths in the config are relative to it. */
  dir: string;
  /** The strings that came from `{$secret}` values: every task log masks them as `[secret]`. */
  secretValues: string[];
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** How `{$secret}` values are fetched (default: the secrets service of the config's rootUrl). */
  fetchSecret?: (name: string, config: WorkerConfig) => Promise<Record<string, unknown>>;
}

/** Parses YAML or JSON text into a config object, or throws a ConfigError naming the file. */
export function parseConfigText(text: string, path: string): unknown {
  try {
    return parseYaml(text);
  } catch (error) {
    throw new ConfigError(`${path} is not valid YAML or JSON: ${(error as Error).message}`);
  }
}

/** Checks the worker-level rules a schema cannot express. */
function crossChecks(config: WorkerConfig): ConfigError | undefined {
  const problems = [];
  const w = config.worker ?? {};
  if (config.rootUrl && !config.credentials) {
    problems.push({ path: 'credentials', message: 'is required when rootUrl is set' });
  }
  if (!config.rootUrl && config.credentials) {
    problems.push({
      path: 'credentials',
      message: 'only applies with rootUrl (the embedded queue makes its own)',
    });
  }
  if ((w.provisionerId === undefined) !== (w.workerType === undefined)) {
    problems.push({ path: 'worker', message: 'give provisionerId and workerType together (or taskQueueId)' });
  }
  if (w.taskQueueId && w.provisionerId && w.taskQueueId !== `${w.provisionerId}/${w.workerType}`) {
    problems.push({ path: 'worker.taskQueueId', message: 'does not match provisionerId/workerType' });
  }
  if (config.rootUrl && config.localQueue) {
    problems.push({ path: 'localQueue', message: 'only applies without rootUrl' });
  }
  return problems.length ? new ConfigError(problems) : undefined;
}

/** Reads, transforms (`$env`, `$secret`) and validates a worker config file. Throws ConfigError naming bad keys. */
export async function loadConfig(path: string, options: LoadOptions = {}): Promise<LoadedConfig> {
  const absolute = resolve(path);
  let text: string;
  try {
    text = await readFile(absolute, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `cannot read the config file ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    );
  }
  return fromObject(parseConfigText(text, path), absolute, options);
}

/** Like `loadConfig`, from an already parsed object. */
export async function fromObject(
  raw: unknown,
  path: string,
  options: LoadOptions = {},
): Promise<LoadedConfig> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`${path} must hold a mapping (YAML) or object (JSON) at the top`);
  }
  const { value, secrets } = applyEnvTransforms(raw, options.env ?? process.env);
  const secretValues: string[] = [];
  // A `{$secret}` still in place is not the value its key wants yet: those keys are checked once it is fetched.
  const underSecret = (path: string) =>
    secrets.some((s) => path === s.path || path.startsWith(`${s.path}.`) || path.startsWith(`${s.path}[`));
  const problems = validateAgainst(workerConfigSchema, value, '').filter((p) => !underSecret(p.path));
  if (problems.length) throw new ConfigError(problems);
  let config = value as WorkerConfig;
  const cross = crossChecks(config);
  if (cross) throw cross;
  if (secrets.length) {
    if (!config.rootUrl || !config.credentials) {
      throw new ConfigError(
        secrets.map((s) => ({
          path: s.path,
          message: '$secret needs rootUrl and credentials (the secrets service)',
        })),
      );
    }
    const circular = secrets.filter((s) => /^(rootUrl|credentials)\b/.test(s.path));
    if (circular.length) {
      throw new ConfigError(
        circular.map((s) => ({
          path: s.path,
          message: 'cannot come from $secret: rootUrl and credentials are what reaches the secrets service',
        })),
      );
    }
    const fetchSecret =
      options.fetchSecret ??
      (async (name: string, c: WorkerConfig) => {
        const client = new taskcluster.Secrets({ rootUrl: c.rootUrl!, credentials: c.credentials as never });
        return (await client.get(name)).secret as Record<string, unknown>;
      });
    config = (await applySecretTransforms(
      config,
      (name) => fetchSecret(name, config),
      secretValues,
    )) as WorkerConfig;
    const again = validateAgainst(workerConfigSchema, config, '');
    if (again.length) throw new ConfigError(again);
  }
  const dir = dirname(path);
  // relative paths in the config are relative to the config file, not to wherever tcw was started
  if (config.worker?.workDir)
    config = { ...config, worker: { ...config.worker, workDir: resolve(dir, config.worker.workDir) } };
  if (config.localQueue?.stateDir) {
    config = {
      ...config,
      localQueue: { ...config.localQueue, stateDir: resolve(dir, config.localQueue.stateDir) },
    };
  }
  return { config, path, dir, secretValues };
}
