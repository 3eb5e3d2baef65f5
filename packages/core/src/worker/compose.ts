import type { EngineV1 } from '../engine/v1/engine.js';
import { FeatureNotSupportedError } from '../errors/feature-not-supported-error.js';
import type { PluginV1 } from '../plugin/v1/plugin.js';
import {
  type ComposedPayloadSchema,
  composePayloadSchema,
  type SchemaContributor,
} from '../schema/payload-schema.js';

/**
 * The payload schema of a worker: the engine's part plus each plugin's part. A plugin that `requires` a capability
 * the engine lacks (or throws `FeatureNotSupportedError`) contributes nothing, so its keys are refused.
 */
export function composeWorkerSchema(engine: EngineV1, plugins: readonly PluginV1[]): ComposedPayloadSchema {
  const engineInfo = { name: engine.name, capabilities: engine.capabilities };
  const contributors: SchemaContributor[] = [
    { owner: `engine:${engine.name}`, part: () => engine.payloadSchema() },
    ...plugins
      .filter((p) => p.payloadSchema)
      .map(
        (plugin): SchemaContributor => ({
          owner: `plugin:${plugin.name}`,
          part: () => {
            const missing = (plugin.requires ?? []).filter((c) => !engine.capabilities[c]);
            if (missing.length) {
              throw new FeatureNotSupportedError(
                missing.join(', '),
                `needs engine capability ${missing.join(', ')}, which the ${engine.name} engine does not have`,
              );
            }
            return plugin.payloadSchema!({ engine: engineInfo });
          },
          keys: keysOf(plugin, engineInfo),
        }),
      ),
  ];
  return composePayloadSchema(contributors, { title: `tcw task payload (${engine.name} engine)` });
}

function keysOf(
  plugin: PluginV1,
  engine: { name: string; capabilities: EngineV1['capabilities'] },
): string[] {
  try {
    return Object.keys(
      plugin.payloadSchema?.({ engine: { ...engine, capabilities: allCapabilities } })?.properties ?? {},
    );
  } catch {
    return [];
  }
}

const allCapabilities = {
  env: true,
  volumes: true,
  proxies: true,
  files: true,
  extract: true,
  gracefulAbort: true,
};
