import { ConfigError, type ConfigProblem } from '@tcw/core';

/** A `{$secret: NAME, key: K}` found in the config, with where it was. */
export interface SecretRef {
  path: string;
  name: string;
  key: string;
}

function describePath(path: string[]): string {
  return path.map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

function envValue(
  ref: Record<string, unknown>,
  path: string[],
  env: NodeJS.ProcessEnv,
  problems: ConfigProblem[],
) {
  const name = ref.$env;
  const extra = Object.keys(ref).filter((k) => k !== '$env' && k !== 'type' && k !== 'default');
  if (typeof name !== 'string' || extra.length) {
    problems.push({
      path: describePath(path),
      message: '{$env: NAME, type?, default?} takes a variable name',
    });
    return undefined;
  }
  if (env[name] === undefined && ref.default !== undefined && typeof ref.default !== 'string') {
    return ref.default; // a typed default (number, boolean, object, list) is used as written
  }
  const raw = env[name] ?? (ref.default as string | undefined);
  if (raw === undefined) {
    problems.push({ path: describePath(path), message: `environment variable ${name} is not set` });
    return undefined;
  }
  switch (ref.type ?? 'string') {
    case 'string':
      return raw;
    case 'number': {
      const n = Number(raw);
      if (Number.isNaN(n))
        problems.push({ path: describePath(path), message: `${name}=${raw} is not a number` });
      return n;
    }
    case 'boolean':
      if (!['true', 'false', '1', '0'].includes(raw)) {
        problems.push({ path: describePath(path), message: `${name}=${raw} is not a boolean` });
      }
      return raw === 'true' || raw === '1';
    case 'json':
      try {
        return JSON.parse(raw);
      } catch {
        problems.push({ path: describePath(path), message: `${name} is not valid JSON` });
        return undefined;
      }
    case 'list':
      return raw.split(/\s+/).filter(Boolean);
    default:
      problems.push({ path: describePath(path), message: `unknown $env type ${String(ref.type)}` });
      return undefined;
  }
}

/**
 * Replaces every `{$env: NAME}` (optionally `type: string|number|boolean|json|list`, `default`) with the variable's
 * value, and collects every `{$secret: NAME, key: K}` (resolved later, against the deployment). Problems name the
 * config path.
 */
export function applyEnvTransforms(
  value: unknown,
  env: NodeJS.ProcessEnv = process.env,
): { value: unknown; secrets: SecretRef[] } {
  const problems: ConfigProblem[] = [];
  const secrets: SecretRef[] = [];
  const walk = (node: unknown, path: string[]): unknown => {
    if (Array.isArray(node)) return node.map((item, i) => walk(item, [...path, String(i)]));
    if (node === null || typeof node !== 'object') return node;
    const obj = node as Record<string, unknown>;
    if ('$env' in obj) return envValue(obj, path, env, problems);
    if ('$secret' in obj) {
      if (typeof obj.$secret !== 'string' || typeof obj.key !== 'string' || Object.keys(obj).length !== 2) {
        problems.push({
          path: describePath(path),
          message: '{$secret: NAME, key: KEY} takes a secret name and a key',
        });
      } else {
        secrets.push({ path: describePath(path), name: obj.$secret, key: obj.key });
      }
      return obj;
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(obj)) out[k] = walk(v, [...path, k]);
    return out;
  };
  const result = walk(value, []);
  if (problems.length) throw new ConfigError(problems);
  return { value: result, secrets };
}

/** The strings in `value` (itself, or the leaves of its arrays and objects), added to `into`. */
function collectStrings(value: unknown, into: string[]): void {
  if (typeof value === 'string') {
    if (!into.includes(value)) into.push(value);
  } else if (Array.isArray(value)) {
    for (const item of value) collectStrings(item, into);
  } else if (value !== null && typeof value === 'object') {
    for (const item of Object.values(value)) collectStrings(item, into);
  }
}

/**
 * Replaces the `{$secret}` objects with values fetched by `fetchSecret(name)` (each secret fetched once). Every
 * string in a value put in place is added to `revealed` (task logs mask them).
 */
export async function applySecretTransforms(
  value: unknown,
  fetchSecret: (name: string) => Promise<Record<string, unknown>>,
  revealed: string[] = [],
): Promise<unknown> {
  const cache = new Map<string, Promise<Record<string, unknown>>>();
  const problems: ConfigProblem[] = [];
  const walk = async (node: unknown, path: string[]): Promise<unknown> => {
    if (Array.isArray(node)) return Promise.all(node.map((item, i) => walk(item, [...path, String(i)])));
    if (node === null || typeof node !== 'object') return node;
    const obj = node as Record<string, unknown>;
    if (typeof obj.$secret === 'string' && typeof obj.key === 'string') {
      const name = obj.$secret;
      if (!cache.has(name)) cache.set(name, fetchSecret(name));
      try {
        const secret = await cache.get(name)!;
        if (!(obj.key in secret)) {
          problems.push({ path: describePath(path), message: `secret ${name} has no key ${obj.key}` });
          return undefined;
        }
        collectStrings(secret[obj.key], revealed);
        return secret[obj.key];
      } catch (error) {
        problems.push({
          path: describePath(path),
          message: `cannot read secret ${name}: ${(error as Error).message}`,
        });
        return undefined;
      }
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(obj)) out[k] = await walk(v, [...path, k]);
    return out;
  };
  const result = await walk(value, []);
  if (problems.length) throw new ConfigError(problems);
  return result;
}
