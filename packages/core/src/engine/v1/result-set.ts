import type { Readable } from 'node:stream';

/** A file taken out of a finished sandbox. */
export interface ExtractedFile {
  stream: Readable;
  /** In bytes, when the engine knows it. */
  size?: number;
  /** When the file sits on the host already (native, script engines): uploads read it in place. */
  hostPath?: string;
}

/**
 * Phase 3 of an engine's lifecycle: the outcome of a sandbox. It cannot be started or stopped; it can only be read
 * and disposed. `success` is true only for a clean, zero exit: the worker never resolves `completed` otherwise.
 */
export interface ResultSetV1 {
  readonly specificationVersion: 'v1';
  readonly success: boolean;
  /** Exit code of the task's main process; null when it was killed by a signal or never started. */
  readonly exitCode: number | null;
  /** True when the sandbox was ended by `abort()`. */
  readonly aborted: boolean;
  /**
   * An outcome that is not a plain success/failure, decided by the engine: a `MalformedPayloadError` (script exit 2),
   * an `InternalError` (exit 3), a `FatalError` (exit 4), a `ResourceUnavailableError`. The worker resolves the task
   * with the matching exception after the `stopped` hooks.
   */
  readonly error?: Error;
  /**
   * A file of the sandbox, by a path in the engine's own terms (absolute in a container; relative to the task
   * directory on the host). Rejects with `MalformedPayloadError` when the path leaves the sandbox and with an
   * error whose code is `ENOENT` when it does not exist. Absent unless the engine has the `extract` capability.
   */
  extractFile?(path: string): Promise<ExtractedFile>;
  /**
   * Every regular file under a folder; `handler` gets a `/`-separated path relative to the folder. A symlink that
   * leaves the sandbox is passed with `refused` set instead of a file.
   */
  extractFolder?(
    path: string,
    handler: (relPath: string, file: ExtractedFile | { refused: string }) => Promise<void>,
  ): Promise<void>;
  /** Releases everything (container, directory, user). Always called, last. */
  dispose(): Promise<void>;
}
