/**
 * What an engine can do. A plugin whose feature needs a capability the engine lacks throws
 * `FeatureNotSupportedError` from `payloadSchema()`, and its payload keys do not exist on that worker.
 */
export interface EngineCapabilities {
  /** `SandboxBuilder.setEnv` */
  env: boolean;
  /** `SandboxBuilder.attachVolume` (caches) */
  volumes: boolean;
  /** `SandboxBuilder.attachProxy` (e.g. the taskcluster proxy) */
  proxies: boolean;
  /** `SandboxBuilder.writeFile` */
  files: boolean;
  /** `ResultSet.extractFile` / `extractFolder` (artifacts) */
  extract: boolean;
  /** `Sandbox.abort` honours a grace period (SIGTERM, then SIGKILL); false: killed at once. */
  gracefulAbort: boolean;
  /** At most this many sandboxes at once (the worker caps its capacity); undefined = unbounded. */
  maxConcurrency?: number;
}

export type Capability = Exclude<keyof EngineCapabilities, 'maxConcurrency'>;

export const NO_CAPABILITIES: EngineCapabilities = {
  env: false,
  volumes: false,
  proxies: false,
  files: false,
  extract: false,
  gracefulAbort: false,
};
