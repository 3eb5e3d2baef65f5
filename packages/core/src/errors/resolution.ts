import { FatalError } from './fatal-error.js';
import { HookTimeoutError } from './hook-timeout-error.js';
import { InternalError } from './internal-error.js';
import { MalformedPayloadError } from './malformed-payload-error.js';
import { PluginError } from './plugin-error.js';
import { ResourceUnavailableError } from './resource-unavailable-error.js';
import { TcwError } from './tcw-error.js';

/** The exception reasons a worker may report (`reportException`). */
export type ExceptionReason =
  | 'malformed-payload'
  | 'internal-error'
  | 'resource-unavailable'
  | 'worker-shutdown'
  | 'intermittent-task';

/** Why a task run ended in an exception, including `canceled`, which is never reported (the queue knows). */
export type AbortReason = 'canceled' | 'worker-shutdown';

export type Resolution =
  | { readonly state: 'completed' }
  | { readonly state: 'failed' }
  | { readonly state: 'exception'; readonly reason: ExceptionReason };

/** How an error decides a task's fate and the worker's health. */
export interface ErrorOutcome {
  resolution: Resolution;
  /** The worker must stop taking work after resolving (a fatal internal error). */
  fatal: boolean;
  /** What to write to the task log (never a stack trace). */
  message: string;
}

function unwrap(error: unknown): unknown {
  let current = error;
  while (
    TcwError.isInstance(current) &&
    current.code === PluginError.code &&
    (current as PluginError).cause
  ) {
    current = (current as PluginError).cause;
  }
  return current;
}

/**
 * The one mapping from errors to resolutions:
 * - `MalformedPayloadError` → exception `malformed-payload` (the task's own problem, shown in its log);
 * - `ResourceUnavailableError` → exception `resource-unavailable`;
 * - `FatalError`, `HookTimeoutError` → exception `internal-error`, and the worker stops gracefully;
 * - `InternalError` and anything unexpected → exception `internal-error`; the worker goes on.
 * A plugin's error is judged by what it wraps, and the message names the plugin.
 */
export function errorOutcome(error: unknown): ErrorOutcome {
  const inner = unwrap(error);
  const message = error instanceof Error ? error.message : String(error);
  if (MalformedPayloadError.isMalformedPayload(inner)) {
    return { resolution: { state: 'exception', reason: 'malformed-payload' }, fatal: false, message };
  }
  if (TcwError.hasCode(inner, ResourceUnavailableError.code)) {
    return { resolution: { state: 'exception', reason: 'resource-unavailable' }, fatal: false, message };
  }
  if (TcwError.hasCode(inner, FatalError.code) || TcwError.hasCode(inner, HookTimeoutError.code)) {
    return { resolution: { state: 'exception', reason: 'internal-error' }, fatal: true, message };
  }
  if (TcwError.hasCode(inner, InternalError.code)) {
    return { resolution: { state: 'exception', reason: 'internal-error' }, fatal: false, message };
  }
  return { resolution: { state: 'exception', reason: 'internal-error' }, fatal: false, message };
}

export function describeResolution(resolution: Resolution): string {
  return resolution.state === 'exception' ? `exception (${resolution.reason})` : resolution.state;
}
