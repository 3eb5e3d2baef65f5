import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  assertCompatible,
  type ComposedPayloadSchema,
  ConfigError,
  type ConfigProblem,
  composeWorkerSchema,
  type EngineProviderV1,
  type EngineV1,
  type PluginProviderV1,
  type PluginV1,
} from '@tcw/core';
import type { LoadedConfig } from './config/load.js';
import { validateAgainst } from './config/validate.js';

/** Engines bundled with the app, by short name. */
export const BUNDLED_ENGINES: Record<string, string> = {
  script: '@tcw/engine-script',
  docker: '@tcw/engine-docker',
  native: '@tcw/engine-native',
};

/** Plugins bundled with the app, by short name. */
export const BUNDLED_PLUGINS: Record<string, string> = {
  env: '@tcw/plugin-env',
  logprefix: '@tcw/plugin-logprefix',
  maxruntime: '@tcw/plugin-maxruntime',
  artifacts: '@tcw/plugin-artifacts',
  livelog: '@tcw/plugin-livelog',
  watchdog: '@tcw/plugin-watchdog',
  stoponerror: '@tcw/plugin-stoponerror',
  reboot: '@tcw/plugin-reboot',
};

/** Enabled unless `plugins.disabled` lists them, in this order, before any other configured plugin. */
export const DEFAULT_PLUGINS = ['env', 'logprefix', 'maxruntime', 'artifacts', 'livelog'];

export interface Composition {
  engine: EngineV1;
  plugins: PluginV1[];
  /** Names of the enabled plugins, as configured (short name or package name), in order. */
  pluginNames: string[];
  schema: ComposedPayloadSchema;
}

/** The target of an `exports` entry for an ESM import in Node (conditions `import`, `node`, `default`). */
function exportTarget(entry: unknown): string | undefined {
  if (typeof entry === 'string') return entry;
  if (Array.isArray(entry)) {
    for (const e of entry) {
      const t = exportTarget(e);
      if (t) return t;
    }
    return undefined;
  }
  if (entry && typeof entry === 'object') {
    for (const [condition, value] of Object.entries(entry)) {
      if (condition === 'import' || condition === 'node' || condition === 'default') {
        const t = exportTarget(value);
        if (t) return t;
      }
    }
  }
  return undefined;
}

/**
 * Resolves a bare package name as `import` would from `fromDir` (node_modules folders upwards), for packages whose
 * `exports` offer no `require` condition, which `require.resolve` cannot resolve. Undefined when not installed.
 */
function resolveImport(specifier: string, fromDir: string): string | undefined {
  for (let dir = resolve(fromDir); ; dir = dirname(dir)) {
    const pkgDir = join(dir, 'node_modules', specifier);
    const manifest = join(pkgDir, 'package.json');
    if (existsSync(manifest)) {
      const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as {
        exports?: unknown;
        module?: string;
        main?: string;
      };
      let target: string | undefined;
      if (pkg.exports !== undefined) {
        const exp = pkg.exports as Record<string, unknown>;
        const root =
          typeof exp === 'object' &&
          exp !== null &&
          !Array.isArray(exp) &&
          Object.keys(exp).some((k) => k.startsWith('.'))
            ? exp['.']
            : exp;
        target = exportTarget(root);
        if (!target) return undefined;
      } else {
        target = pkg.main ?? 'index.js';
      }
      return join(pkgDir, target);
    }
    if (dirname(dir) === dir) return undefined;
  }
}

async function importFrom(specifier: string, configDir: string): Promise<Record<string, unknown>> {
  // a package next to the config file first (third-party plugins installed there), then the app's own
  for (const base of [join(configDir, 'noop.js'), import.meta.url]) {
    let resolved: string | undefined;
    try {
      resolved = createRequire(base).resolve(specifier);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'MODULE_NOT_FOUND' && code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED') throw error;
      // an ESM-only package (exports with an `import` condition only)
      resolved = resolveImport(specifier, dirname(base.startsWith('file:') ? fileURLToPath(base) : base));
    }
    if (resolved) return (await import(pathToFileURL(resolved).href)) as Record<string, unknown>;
  }
  return (await import(specifier)) as Record<string, unknown>;
}

async function loadProvider<K extends 'engine' | 'plugin'>(
  kind: K,
  name: string,
  packageName: string,
  configDir: string,
  path: string,
): Promise<K extends 'engine' ? EngineProviderV1 : PluginProviderV1> {
  let mod: Record<string, unknown>;
  try {
    mod = await importFrom(packageName, configDir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
        ? `package ${packageName} is not installed (npm install ${packageName})`
        : `package ${packageName} failed to load: ${(error as Error).message}`;
    throw new ConfigError([{ path, message: `${kind} ${name}: ${why}` }]);
  }
  const provider = (mod.default ?? mod.provider) as { kind?: string } | undefined;
  if (!provider || provider.kind !== kind) {
    throw new ConfigError([
      {
        path,
        message: `${packageName} does not export a tcw ${kind} provider (default export from define${kind === 'engine' ? 'Engine' : 'Plugin'})`,
      },
    ]);
  }
  assertCompatible(
    `${kind} ${name} (${packageName})`,
    provider as { specificationVersion?: unknown; coreRange?: string },
  );
  return provider as never;
}

/** The enabled plugins' names in order: the defaults not disabled, then every other key of `plugins`. */
export function enabledPluginNames(config: LoadedConfig['config']): string[] {
  const section = config.plugins ?? {};
  const disabled = new Set(section.disabled ?? []);
  const configured = Object.keys(section).filter((k) => k !== 'disabled');
  const names = [...DEFAULT_PLUGINS, ...configured.filter((k) => !DEFAULT_PLUGINS.includes(k))];
  return names.filter((n) => !disabled.has(n));
}

/**
 * Loads the engine and the enabled plugins named by the config, validates each one's options against its own
 * config schema (every bad key named by its path), creates them and composes the payload schema (a payload key
 * claimed twice is an error). Nothing is started.
 */
export async function compose(loaded: LoadedConfig): Promise<Composition> {
  const { config, dir } = loaded;
  const problems: ConfigProblem[] = [];
  const engineName = config.engine;
  const enginePackage = BUNDLED_ENGINES[engineName] ?? engineName;
  const engineProvider = await loadProvider('engine', engineName, enginePackage, dir, 'engine');
  const engineConfig: Record<string, unknown> = { ...(config.engines?.[engineName] ?? {}) };
  for (const key of Object.keys(config.engines ?? {})) {
    if (key !== engineName && !BUNDLED_ENGINES[key] && !key.includes('/')) {
      problems.push({
        path: `engines.${key}`,
        message: `unknown engine (the configured engine is ${engineName})`,
      });
    }
  }
  problems.push(...validateAgainst(engineProvider.configSchema, engineConfig, `engines.${engineName}`));
  for (const [i, name] of (config.plugins?.disabled ?? []).entries()) {
    // Disabling a plugin this worker does not have is harmless (seed 000 disables tcproxy and interactive), but a
    // near miss of a bundled name is a typo that would leave the plugin enabled.
    const near = Object.keys(BUNDLED_PLUGINS).find(
      (known) => known !== name && editDistance(known, name) <= 2,
    );
    if (!BUNDLED_PLUGINS[name] && !(name in (config.plugins ?? {})) && near) {
      problems.push({
        path: `plugins.disabled[${i}]`,
        message: `unknown plugin ${name}; did you mean ${near}?`,
      });
    }
  }
  const names = enabledPluginNames(config);
  const providers: PluginProviderV1[] = [];
  for (const name of names) {
    const path = `plugins.${name}`;
    try {
      const provider = await loadProvider('plugin', name, BUNDLED_PLUGINS[name] ?? name, dir, path);
      providers.push(provider);
      const options = (config.plugins?.[name] ?? {}) as Record<string, unknown>;
      problems.push(...validateAgainst(provider.configSchema, options, path));
    } catch (error) {
      if (error instanceof ConfigError) problems.push(...error.problems);
      else throw error;
    }
  }
  if (problems.length) throw new ConfigError(problems);

  if (
    engineProvider.configSchema.properties &&
    'baseDir' in (engineProvider.configSchema.properties as object)
  ) {
    engineConfig.baseDir ??= dir;
  }
  const engine = await engineProvider.create(engineConfig);
  assertCompatible(`engine ${engineName}`, engine);
  const plugins: PluginV1[] = [];
  for (const [i, provider] of providers.entries()) {
    const name = names[i]!;
    const plugin = await provider.create((config.plugins?.[name] ?? {}) as Record<string, unknown>);
    assertCompatible(`plugin ${name}`, plugin);
    plugins.push(plugin);
  }
  const schema = composeWorkerSchema(engine, plugins);
  return { engine, plugins, pluginNames: names, schema };
}

/** Levenshtein distance, for "did you mean" hints. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}
