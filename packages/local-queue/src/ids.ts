import { randomBytes, randomUUID } from 'node:crypto';

/** A v4 slugid (22 chars of URL-safe base64 of a v4 UUID), "nice" form: first character A–f. */
export function slugid(): string {
  const bytes = Buffer.from(randomUUID().replace(/-/g, ''), 'hex');
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('base64url');
}

/** A random access token: 44 URL-safe characters (as Taskcluster issues them). */
export function randomToken(): string {
  return randomBytes(33).toString('base64url');
}

export const SLUGID_RE = /^[A-Za-z0-9_-]{8}[Q-T][A-Za-z0-9_-][CGKOSWaeimquy26-][A-Za-z0-9_-]{10}[AQgw]$/;
export const PROVISIONER_RE = /^[a-zA-Z0-9-_]{1,38}$/;
export const WORKER_TYPE_RE = /^[a-z]([-a-z0-9]{0,36}[a-z0-9])?$/;
export const IDENT_RE = /^[a-zA-Z0-9-_]{1,38}$/;
export const TASK_QUEUE_RE = /^[a-zA-Z0-9-_]{1,38}\/[a-z]([-a-z0-9]{0,36}[a-z0-9])?$/;
