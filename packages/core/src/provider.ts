import type { EngineV1 } from './engine/v1/engine.js';
import { IncompatibleExtensionError } from './errors/incompatible-error.js';
import type { PluginV1 } from './plugin/v1/plugin.js';
import type { JSONSchema } from './schema/ajv.js';
import { CORE_VERSION, satisfies } from './version.js';

/**
 * How a plugin package is loaded from the worker's config: its default export (or `provider` export). The worker
 * validates `plugins.<name>` against `configSchema` (unknown keys are errors) and calls `create` with it.
 */
export interface PluginProviderV1<Config = Record<string, unknown>> {
  readonly specificationVersion: 'v1';
  readonly kind: 'plugin';
  readonly name: string;
  /** JSON Schema of the plugin's config (an object); `{}` is passed when the config has no entry. */
  readonly configSchema: JSONSchema;
  /** The @tcw/core versions this plugin works with (`^0.1.0`). */
  readonly coreRange?: string;
  /** One line for `tcw plugins` and the docs. */
  readonly description?: string;
  create(config: Config): PluginV1 | Promise<PluginV1>;
}

/** How an engine package is loaded from the worker's config (`engine: <name>`, `engines.<name>: {...}`). */
export interface EngineProviderV1<Config = Record<string, unknown>> {
  readonly specificationVersion: 'v1';
  readonly kind: 'engine';
  readonly name: string;
  readonly configSchema: JSONSchema;
  readonly coreRange?: string;
  readonly description?: string;
  create(config: Config): EngineV1 | Promise<EngineV1>;
}

export function definePlugin<Config = Record<string, unknown>>(
  provider: Omit<PluginProviderV1<Config>, 'specificationVersion' | 'kind'>,
): PluginProviderV1<Config> {
  return { specificationVersion: 'v1', kind: 'plugin', ...provider };
}

export function defineEngine<Config = Record<string, unknown>>(
  provider: Omit<EngineProviderV1<Config>, 'specificationVersion' | 'kind'>,
): EngineProviderV1<Config> {
  return { specificationVersion: 'v1', kind: 'engine', ...provider };
}

/**
 * Checks that an engine, plugin or provider speaks a contract version this core implements and accepts this
 * core's version; throws `IncompatibleExtensionError` (code ERR_INCOMPATIBLE_EXTENSION) otherwise.
 */
export function assertCompatible(
  what: string,
  extension: { specificationVersion?: unknown; coreRange?: string | undefined },
): void {
  if (extension.specificationVersion !== 'v1') {
    throw new IncompatibleExtensionError(
      `${what} implements contract ${String(extension.specificationVersion)}, this @tcw/core ${CORE_VERSION} implements v1`,
    );
  }
  if (extension.coreRange && !satisfies(CORE_VERSION, extension.coreRange)) {
    throw new IncompatibleExtensionError(
      `${what} needs @tcw/core ${extension.coreRange}, but this worker runs @tcw/core ${CORE_VERSION}`,
    );
  }
}
