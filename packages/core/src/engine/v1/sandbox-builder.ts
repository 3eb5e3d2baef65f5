import type { SandboxV1 } from './sandbox.js';

/** A host folder to mount in the sandbox (a cache, say). */
export interface VolumeSpec {
  hostPath: string;
  readOnly: boolean;
}

/** A local HTTP service the task may reach (the taskcluster proxy, say), at `<engine-specific base>/<name>/`. */
export interface ProxySpec {
  /** Where the worker serves it, e.g. `http://127.0.0.1:34567`. */
  target: string;
}

/**
 * Phase 1: a sandbox being configured. Plugins call it from `buildSandbox`; methods for a capability the engine
 * lacks throw `FeatureNotSupportedError`. Bad input (an invalid env name, a mount point clash) throws
 * `MalformedPayloadError`.
 */
export interface SandboxBuilderV1 {
  readonly specificationVersion: 'v1';
  setEnv(name: string, value: string): void;
  attachVolume(mountPoint: string, volume: VolumeSpec): void;
  /** Returns how the task reaches the proxy (a URL or an env var value). */
  attachProxy(name: string, proxy: ProxySpec): string;
  writeFile(path: string, data: string | Uint8Array, mode?: number): Promise<void>;
  /** Starts the task. The builder is unusable afterwards. */
  start(): Promise<SandboxV1>;
  /** Gives up before starting (a failure in another stage); releases what was prepared. Idempotent. */
  discard(): Promise<void>;
}
