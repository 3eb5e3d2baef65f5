import { ApiError, invalidInput } from './errors.js';
import { IDENT_RE, PROVISIONER_RE, SLUGID_RE, TASK_QUEUE_RE, WORKER_TYPE_RE } from './ids.js';

export const PRIORITIES = ['highest', 'very-high', 'high', 'medium', 'low', 'very-low', 'lowest'] as const;

/** Claim order value: higher is claimed first. `normal` (accepted up to v101) counts as `lowest`. */
export function priorityValue(priority: string): number {
  const i = PRIORITIES.indexOf(priority as (typeof PRIORITIES)[number]);
  return i < 0 ? 1 : 7 - i;
}

/** The priority and every higher one (for the createTask scope AnyOf). */
export function prioritiesAtOrAbove(priority: string): string[] {
  const p = priority === 'normal' ? 'lowest' : priority;
  const i = PRIORITIES.indexOf(p as (typeof PRIORITIES)[number]);
  return PRIORITIES.slice(0, i + 1);
}

export interface TaskDefinition {
  taskQueueId: string;
  provisionerId: string;
  workerType: string;
  schedulerId: string;
  projectId: string;
  taskGroupId: string;
  dependencies: string[];
  requires: 'all-completed' | 'all-resolved';
  routes: string[];
  priority: string;
  retries: number;
  created: string;
  deadline: string;
  expires: string;
  scopes: string[];
  payload: Record<string, unknown>;
  metadata: { name: string; description: string; owner: string; source: string };
  tags: Record<string, string>;
  extra: Record<string, unknown>;
}

const ALLOWED = new Set([
  'taskQueueId',
  'provisionerId',
  'workerType',
  'schedulerId',
  'projectId',
  'taskGroupId',
  'dependencies',
  'requires',
  'routes',
  'priority',
  'retries',
  'created',
  'deadline',
  'expires',
  'scopes',
  'payload',
  'metadata',
  'tags',
  'extra',
]);

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const PRINTABLE = /^[\x20-\x7e]*$/;
const DAY = 24 * 3600 * 1000;
const SKEW = 15 * 60 * 1000;

export interface ValidateOptions {
  now: number;
  maxTaskDeadlineDays: number;
}

/**
 * Validates a createTask body like the queue's JSON schema plus its semantic checks, and returns the stored
 * definition with every default filled in. Errors name the JSON pointer of the offending field.
 */
export function normalizeTaskDefinition(
  taskId: string,
  input: unknown,
  { now, maxTaskDeadlineDays }: ValidateOptions,
): TaskDefinition {
  const problems: string[] = [];
  const fail = (pointer: string, msg: string) => problems.push(`${pointer || '/'}: ${msg}`);
  if (!isObject(input))
    throw invalidInput('Schema validation failed: the request body must be a JSON object');
  for (const key of Object.keys(input)) {
    if (!ALLOWED.has(key)) fail(`/${key}`, 'is not an allowed property (additionalProperties: false)');
  }
  for (const key of ['created', 'deadline', 'payload', 'metadata']) {
    if (input[key] === undefined) fail(`/${key}`, 'is required');
  }
  const str = (key: string, re: RegExp | undefined, def?: string): string => {
    const v = input[key];
    if (v === undefined) return def ?? '';
    if (typeof v !== 'string') {
      fail(`/${key}`, 'must be a string');
      return def ?? '';
    }
    if (re && !re.test(v)) fail(`/${key}`, `must match ${re}`);
    return v;
  };
  const date = (key: string): number => {
    const v = input[key];
    if (v === undefined) return Number.NaN;
    const t = typeof v === 'string' ? Date.parse(v) : Number.NaN;
    if (Number.isNaN(t)) fail(`/${key}`, 'must be a date-time string');
    return t;
  };

  let taskQueueId = str('taskQueueId', TASK_QUEUE_RE);
  let provisionerId = str('provisionerId', PROVISIONER_RE);
  let workerType = str('workerType', WORKER_TYPE_RE);
  if (taskQueueId) {
    const [p, w] = taskQueueId.split('/') as [string, string];
    if (
      (input.provisionerId !== undefined || input.workerType !== undefined) &&
      (p !== provisionerId || w !== workerType)
    ) {
      fail('/taskQueueId', 'must equal provisionerId/workerType when those are given');
    }
    provisionerId = p;
    workerType = w;
  } else if (provisionerId && workerType) {
    taskQueueId = `${provisionerId}/${workerType}`;
  } else {
    fail('/taskQueueId', 'is required (or both provisionerId and workerType)');
  }
  const schedulerId = str('schedulerId', IDENT_RE, '-');
  const projectId = str('projectId', /^[a-zA-Z0-9._/-]{1,500}$/, 'none');
  const taskGroupId = str('taskGroupId', SLUGID_RE, taskId);

  const strArray = (key: string, maxItems: number, each: (s: string, p: string) => void): string[] => {
    const v = input[key];
    if (v === undefined) return [];
    if (!Array.isArray(v)) {
      fail(`/${key}`, 'must be an array');
      return [];
    }
    if (v.length > maxItems) fail(`/${key}`, `must have at most ${maxItems} items`);
    if (new Set(v).size !== v.length) fail(`/${key}`, 'items must be unique');
    v.forEach((s, i) => {
      if (typeof s !== 'string') fail(`/${key}/${i}`, 'must be a string');
      else each(s, `/${key}/${i}`);
    });
    return v.filter((s): s is string => typeof s === 'string');
  };
  const dependencies = strArray('dependencies', 10000, (s, p) => {
    if (!SLUGID_RE.test(s)) fail(p, 'must be a slugid');
  });
  const routes = strArray('routes', 64, (s, p) => {
    if (s.length < 1 || s.length > 249) fail(p, 'must be 1-249 characters');
  });
  const scopes = strArray('scopes', Number.POSITIVE_INFINITY, (s, p) => {
    if (!PRINTABLE.test(s)) fail(p, 'must be printable ASCII');
    if (s.endsWith('**')) fail(p, 'must not end with `**`');
  });
  const requires = input.requires ?? 'all-completed';
  if (requires !== 'all-completed' && requires !== 'all-resolved') {
    fail('/requires', 'must be all-completed or all-resolved');
  }
  const priority = input.priority ?? 'lowest';
  if (typeof priority !== 'string' || !([...PRIORITIES, 'normal'] as string[]).includes(priority)) {
    fail('/priority', `must be one of ${PRIORITIES.join(', ')}`);
  }
  const retries = input.retries ?? 5;
  if (typeof retries !== 'number' || !Number.isInteger(retries) || retries < 0 || retries > 49) {
    fail('/retries', 'must be an integer 0..49');
  }
  if (input.payload !== undefined && !isObject(input.payload)) fail('/payload', 'must be an object');
  const metadata = input.metadata;
  if (metadata !== undefined) {
    if (!isObject(metadata)) fail('/metadata', 'must be an object');
    else {
      const limits: Record<string, number> = { name: 255, description: 32768, owner: 255, source: 4096 };
      for (const key of Object.keys(metadata)) {
        if (!(key in limits)) fail(`/metadata/${key}`, 'is not an allowed property');
      }
      for (const [key, max] of Object.entries(limits)) {
        const v = metadata[key];
        if (typeof v !== 'string') fail(`/metadata/${key}`, 'is required and must be a string');
        else if (v.length > max) fail(`/metadata/${key}`, `must be at most ${max} characters`);
        else if (key === 'source' && !/^(https?:\/\/|ssh:\/\/|git@)/.test(v)) {
          fail('/metadata/source', 'must match ^(https?://|ssh://|git@)');
        }
      }
    }
  }
  const tags = input.tags ?? {};
  if (!isObject(tags)) fail('/tags', 'must be an object');
  else {
    for (const [k, v] of Object.entries(tags)) {
      if (typeof v !== 'string' || v.length > 4096)
        fail(`/tags/${k}`, 'must be a string of at most 4096 characters');
    }
  }
  const extra = input.extra ?? {};
  if (!isObject(extra)) fail('/extra', 'must be an object');

  const created = date('created');
  const deadline = date('deadline');
  const expiresInput = input.expires === undefined ? undefined : date('expires');
  if (problems.length > 0) throw invalidInput(`Schema validation failed:\n${problems.join('\n')}`);

  if (Math.abs(created - now) > SKEW) fail('/created', 'must be within 15 minutes of the current time');
  if (deadline <= now) fail('/deadline', 'must be in the future');
  if (deadline < created) fail('/deadline', 'must not be before created');
  if (deadline > now + maxTaskDeadlineDays * DAY + SKEW) {
    fail('/deadline', `must be at most ${maxTaskDeadlineDays} days in the future`);
  }
  const expires = expiresInput ?? deadline + 365 * DAY;
  if (expires < deadline) fail('/expires', 'must not be before deadline');
  if (problems.length > 0) throw new ApiInputError(problems);

  return {
    taskQueueId,
    provisionerId,
    workerType,
    schedulerId,
    projectId,
    taskGroupId,
    dependencies,
    requires: requires as TaskDefinition['requires'],
    routes,
    priority: priority as string,
    retries: retries as number,
    created: new Date(created).toJSON(),
    deadline: new Date(deadline).toJSON(),
    expires: new Date(expires).toJSON(),
    scopes,
    payload: input.payload as Record<string, unknown>,
    metadata: metadata as TaskDefinition['metadata'],
    tags: tags as Record<string, string>,
    extra: extra as Record<string, unknown>,
  };
}

class ApiInputError extends ApiError {
  constructor(problems: string[]) {
    super(400, 'InputError', problems.join('\n'));
  }
}

/** Canonical JSON (sorted keys) for comparing definitions. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isObject(value)) {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}
