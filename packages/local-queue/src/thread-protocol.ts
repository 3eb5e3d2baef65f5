// Messages between startLocalQueueThread (parent) and thread-main (the queue's worker thread).
import type { FaultSpec, InProcessCredentials } from './server.js';

export interface ErrorShape {
  name: string;
  message: string;
  statusCode?: number;
  code?: string;
  body?: unknown;
  stack?: string;
}

export type ParentMessage =
  | {
      type: 'call';
      id: number;
      service: 'queue' | 'object' | 'auth' | 'secrets' | 'worker-manager';
      credentials: InProcessCredentials | undefined;
      retries: number | undefined;
      method: string;
      args: unknown[];
    }
  | { type: 'subscribe'; name: string }
  | { type: 'faults'; id: number; spec: FaultSpec | FaultSpec[] }
  | { type: 'clearFaults'; id: number }
  | { type: 'createTasks'; id: number; n: number; template: Record<string, unknown> | undefined }
  | { type: 'close'; id: number };

export type ThreadMessage =
  | {
      type: 'ready';
      rootUrl: string;
      rootCredentials: { clientId: string; accessToken: string };
      methods: Record<string, string[]>;
    }
  | { type: 'failed'; error: ErrorShape }
  | { type: 'reply'; id: number; value?: unknown; error?: ErrorShape }
  | { type: 'event'; name: string; payload: unknown }
  | { type: 'log'; level: 'info' | 'warn' | 'error' | 'debug'; args: unknown[] };

/** What crosses the thread boundary of an error: its message and taskcluster-client-like fields. */
export function errorShape(error: unknown): ErrorShape {
  const e = error as Partial<ErrorShape> & { code?: unknown };
  const shape: ErrorShape = {
    name: typeof e?.name === 'string' ? e.name : 'Error',
    message: typeof e?.message === 'string' ? e.message : String(error),
  };
  if (typeof e?.statusCode === 'number') shape.statusCode = e.statusCode;
  if (typeof e?.code === 'string') shape.code = e.code;
  if (e?.body !== undefined) shape.body = cloneable(e.body);
  if (typeof e?.stack === 'string') shape.stack = e.stack;
  return shape;
}

/** Rebuilds an error from its shape (statusCode, code and body as taskcluster-client's errors have them). */
export function fromErrorShape(shape: ErrorShape): Error {
  const error = new Error(shape.message) as Error & Partial<ErrorShape>;
  error.name = shape.name;
  if (shape.statusCode !== undefined) error.statusCode = shape.statusCode;
  if (shape.code !== undefined) error.code = shape.code;
  if (shape.body !== undefined) error.body = shape.body;
  if (shape.stack) error.stack = shape.stack;
  return error;
}

/** Errors travel as their shape (postMessage would drop `statusCode`, `code`, `body`); the rest as it is. */
export function cloneable(value: unknown): unknown {
  return value instanceof Error ? { ...errorShape(value) } : value;
}

/** The JSON form of a message that postMessage could not clone (a function or a symbol somewhere in it). */
export function jsonSafe<T>(message: T): T {
  return JSON.parse(
    JSON.stringify(message, (_k, v) =>
      v instanceof Error ? errorShape(v) : typeof v === 'bigint' ? String(v) : v,
    ),
  ) as T;
}
