import { createHash, createHmac } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import {
  closeSync,
  fdatasync as fdatasyncCb,
  fsync as fsyncCb,
  fsyncSync,
  openSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { StatementSync } from 'node:sqlite';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import { createTemporaryCredentials, formatExpr, type ScopeExpr, satisfies, unsatisfied } from './auth.js';
import { type Db, transaction } from './db.js';
import { ApiError, badRequest, conflict, forbidden, invalidInput, notFound } from './errors.js';
import { IDENT_RE, slugid, TASK_QUEUE_RE } from './ids.js';
import {
  canonicalJson,
  normalizeTaskDefinition,
  prioritiesAtOrAbove,
  priorityValue,
  type TaskDefinition,
} from './task-definition.js';

export interface Run {
  runId: number;
  state: 'pending' | 'running' | 'completed' | 'failed' | 'exception';
  reasonCreated: string;
  reasonResolved?: string;
  workerGroup?: string;
  workerId?: string;
  takenUntil?: string;
  scheduled: string;
  started?: string;
  resolved?: string;
}

interface TaskRecord {
  taskId: string;
  def: TaskDefinition;
  retriesLeft: number;
  deadline: number;
  expires: number;
  runs: Run[];
  open: boolean;
}

interface TaskRow {
  task_id: string;
  definition: string;
  retries_left: number;
  deadline: number;
  expires: number;
  runs: string;
  open: number;
}

interface ArtifactRow {
  task_id: string;
  run_id: number;
  name: string;
  storage_type: string;
  content_type: string;
  expires: number;
  present: number;
  details: string;
}

interface ObjectRow {
  name: string;
  project_id: string;
  upload_id: string;
  expires: number;
  content_type: string | null;
  content_length: number | null;
  hashes: string;
  file: string | null;
  size: number | null;
  finished: number;
  /** The bytes of a small object uploaded inline (then `file` is null). */
  data: Uint8Array | null;
}

export interface Logger {
  info(...a: unknown[]): void;
  warn(...a: unknown[]): void;
  error(...a: unknown[]): void;
  debug(...a: unknown[]): void;
}

export interface ServiceOptions {
  db: Db;
  objectsDir: string;
  root: { clientId: string; accessToken: string };
  events: EventEmitter;
  logger: Logger;
  claimTimeoutMs: number;
  claimWorkTimeoutMs: number;
  deadlineDelayMs: number;
  maxTaskDeadlineDays: number;
  reregistrationTimeoutMs: number;
  /** Base URL of the server (for data URLs), known once listening. */
  baseUrl: () => string;
  /** fsync object bytes before acknowledging them (durability `full`). */
  fsyncObjects: boolean;
  /**
   * Durability `full` with grouped, asynchronous syncs: the database runs with synchronous=NORMAL and
   * `durable()` fdatasyncs this WAL file (and the object files and folder written since) on the thread pool
   * before a reply goes out. Without it, durability comes from synchronous=FULL (or is `process`).
   */
  walFile?: string;
}

/** In-process replies do not wait for the fsync; what they changed reaches the disk within this long. */
const BACKGROUND_SYNC_MS = 200;

const EXCEPTION_REASONS = new Set([
  'malformed-payload',
  'resource-unavailable',
  'internal-error',
  'superseded',
  'intermittent-task',
  'worker-shutdown',
]);
const ARTIFACT_ERROR_REASONS = new Set([
  'file-missing-on-worker',
  'invalid-resource-on-worker',
  'too-large-file-on-worker',
  'file-not-readable-on-worker',
]);
const MIN = 60_000;
const ARTIFACT_ALLOWANCE_MS = 25 * MIN;
const MAX_RUNS = 50;

const iso = (ms: number) => new Date(ms).toJSON();
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export function requireScopes(scopes: readonly string[], expr: ScopeExpr): void {
  if (!satisfies(scopes, expr)) {
    const missing = unsatisfied(scopes, expr) ?? expr;
    throw forbidden(
      `Client does not have sufficient scopes. This request requires scopes satisfying:\n${formatExpr(expr)}\n` +
        `Missing: ${formatExpr(missing)}`,
    );
  }
}

function parseDate(v: unknown, pointer: string): number {
  const t = typeof v === 'string' ? Date.parse(v) : Number.NaN;
  if (Number.isNaN(t)) throw invalidInput(`${pointer}: must be a date-time string`);
  return t;
}

interface PendingEvent {
  name: string;
  payload: Record<string, unknown>;
}

type Waiter = () => void;

/** The queue's state machine, artifacts, object store, workers and secrets over one SQLite database. */
export class QueueService {
  readonly #o: ServiceOptions;
  readonly #db: Db;
  #eventsOut: PendingEvent[] = [];
  #wake = new Set<string>();
  readonly #waiters = new Map<string, Set<Waiter>>();
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #closed = false;
  readonly #urlKey: string;
  readonly #walFd: number | undefined;
  /** An object file was renamed into place since the last sync began: the objects folder needs one. */
  #dirUnsynced = false;
  #syncRunning: Promise<void> | undefined;
  /** SQLite's `total_changes()` when the last completed sync began: nothing newer needs a sync. */
  #syncedChanges = -1;
  #syncNext: Promise<void> | undefined;

  constructor(options: ServiceOptions) {
    this.#o = options;
    this.#db = options.db;
    this.#walFd = options.walFile === undefined ? undefined : openSync(options.walFile, 'r');
    this.#urlKey = createHmac('sha256', options.root.accessToken)
      .update('local-queue-data-urls')
      .digest('hex');
  }

  start(): void {
    this.#runResolvers();
  }

  readonly #statements = new Map<string, StatementSync>();

  /** A prepared statement, compiled once per SQL text. */
  #q(sql: string): StatementSync {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = this.#db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  /**
   * Resolves once everything committed before the call is on disk (durability `full` with `walFile`): one
   * fdatasync of the WAL, plus the objects folder when a file was renamed into it, shared by every caller waiting at the
   * same time (group commit), run on the thread pool. Replies wait for it; the event loop does not.
   */
  durable(): Promise<void> {
    if (this.#walFd === undefined) return Promise.resolve();
    // a read (a status poll, an empty claimWork) after everything was synced has nothing to wait for
    if (!this.#dirUnsynced && this.#totalChanges() === this.#syncedChanges) return Promise.resolve();
    this.#syncNext ??= (async () => {
      // a sync already running may have started before our commits: wait for it, then start a fresh one
      if (this.#syncRunning) await this.#syncRunning.catch(() => {});
      this.#syncNext = undefined;
      const changes = this.#totalChanges();
      const dir = this.#dirUnsynced;
      this.#dirUnsynced = false;
      const run = Promise.all([fdatasync(this.#walFd!), ...(dir ? [syncPath(this.#o.objectsDir)] : [])]).then(
        () => {},
      );
      this.#syncRunning = run;
      try {
        await run;
        this.#syncedChanges = Math.max(this.#syncedChanges, changes);
      } finally {
        if (this.#syncRunning === run) this.#syncRunning = undefined;
      }
    })();
    return this.#syncNext;
  }

  /**
   * For replies that stay in this process (the embedded worker's in-process calls, which cannot outlive a crash
   * of it): no wait. What they changed is synced by the next reply that leaves the process (`durable()`), or in
   * the background within BACKGROUND_SYNC_MS, whichever comes first.
   */
  syncSoon(): void {
    if (this.#walFd === undefined || this.#closed || this.#backgroundSync) return;
    this.#backgroundSync = setTimeout(() => {
      this.#backgroundSync = undefined;
      if (this.#closed) return;
      this.durable().catch((err) =>
        this.#o.logger.error('the background sync of the state database failed', { err }),
      );
    }, BACKGROUND_SYNC_MS);
    this.#backgroundSync.unref();
  }

  #backgroundSync: NodeJS.Timeout | undefined;

  #totalChanges(): number {
    return Number((this.#q('SELECT total_changes() AS n').get() as { n: number | bigint }).n);
  }

  close(): void {
    this.#closed = true;
    if (this.#backgroundSync) clearTimeout(this.#backgroundSync);
    this.#backgroundSync = undefined;
    if (this.#walFd !== undefined) closeSync(this.#walFd);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const set of this.#waiters.values()) for (const w of set) w();
    this.#waiters.clear();
  }

  // ---------------------------------------------------------------- plumbing

  /** Runs a mutation in a transaction; events and claimWork wake-ups go out only after COMMIT. */
  #tx<T>(fn: () => T): T {
    this.#eventsOut = [];
    this.#wake = new Set();
    const result = transaction(this.#db, fn);
    const events = this.#eventsOut;
    const wake = this.#wake;
    this.#eventsOut = [];
    this.#wake = new Set();
    for (const e of events) {
      try {
        this.#o.events.emit(e.name, e.payload);
      } catch (err) {
        this.#o.logger.error('event listener threw', { event: e.name, err });
      }
    }
    for (const q of wake) {
      const set = this.#waiters.get(q);
      if (set) for (const w of [...set]) w();
    }
    return result;
  }

  #emit(name: string, payload: Record<string, unknown>): void {
    this.#eventsOut.push({ name, payload });
  }

  /** Parsed task definitions by taskId (a definition never changes once created): saves a parse per load. */
  readonly #definitions = new Map<string, TaskDefinition>();

  #definition(taskId: string, text: string): TaskDefinition {
    let def = this.#definitions.get(taskId);
    if (!def) {
      // frozen: records share it, so a change would reach every later load (and throws instead)
      def = deepFreeze(JSON.parse(text)) as TaskDefinition;
      if (this.#definitions.size >= 1024) this.#definitions.delete(this.#definitions.keys().next().value!);
      this.#definitions.set(taskId, def);
    }
    return def;
  }

  #load(taskId: string): TaskRecord | undefined {
    const row = this.#q(
      'SELECT task_id, definition, retries_left, deadline, expires, runs, open FROM tasks WHERE task_id = ?',
    ).get(taskId) as TaskRow | undefined;
    if (!row) return undefined;
    return {
      taskId: row.task_id,
      def: this.#definition(row.task_id, row.definition),
      retriesLeft: row.retries_left,
      deadline: row.deadline,
      expires: row.expires,
      runs: JSON.parse(row.runs),
      open: row.open === 1,
    };
  }

  #save(rec: TaskRecord): void {
    const last = rec.runs.at(-1);
    const takenUntil = last?.state === 'running' && last.takenUntil ? Date.parse(last.takenUntil) : null;
    this.#q('UPDATE tasks SET runs = ?, retries_left = ?, open = ?, taken_until = ? WHERE task_id = ?').run(
      JSON.stringify(rec.runs),
      rec.retriesLeft,
      rec.open ? 1 : 0,
      takenUntil,
      rec.taskId,
    );
    if (takenUntil !== null) this.#armTimer(takenUntil);
  }

  #mustLoad(taskId: string): TaskRecord {
    const rec = this.#load(taskId);
    if (!rec) throw notFound(`Task ${taskId} not found`);
    return rec;
  }

  status(rec: TaskRecord): Record<string, unknown> {
    const last = rec.runs.at(-1);
    return {
      taskId: rec.taskId,
      provisionerId: rec.def.provisionerId,
      workerType: rec.def.workerType,
      taskQueueId: rec.def.taskQueueId,
      schedulerId: rec.def.schedulerId,
      projectId: rec.def.projectId,
      taskGroupId: rec.def.taskGroupId,
      deadline: rec.def.deadline,
      expires: rec.def.expires,
      retriesLeft: rec.retriesLeft,
      state: last ? last.state : 'unscheduled',
      runs: rec.runs.map((r) => ({ ...r })),
    };
  }

  #makePending(rec: TaskRecord, reasonCreated: string, now: number): Run {
    const run: Run = { runId: rec.runs.length, state: 'pending', reasonCreated, scheduled: iso(now) };
    rec.runs.push(run);
    rec.open = true;
    this.#q(
      'INSERT INTO pending (task_queue_id, priority, task_id, run_id, deadline) VALUES (?, ?, ?, ?, ?)',
    ).run(rec.def.taskQueueId, priorityValue(rec.def.priority), rec.taskId, run.runId, rec.deadline);
    this.#wake.add(rec.def.taskQueueId);
    this.#emit('task-pending', { taskId: rec.taskId, runId: run.runId, status: this.status(rec) });
    return run;
  }

  /** Resolves a run; retries automatically when the reason allows; unblocks dependents when final. */
  /**
   * Resolves the task's open run as an exception (`deadline-exceeded`, `canceled`). A task with no run yet (still
   * unscheduled) gets a synthetic run (reasonCreated `exception`), as the real queue does. Returns false when the
   * last run is already resolved.
   */
  #resolveOpenRun(rec: TaskRecord, reason: string, now: number): boolean {
    let run = rec.runs.at(-1);
    if (!run) {
      run = { runId: 0, state: 'pending', reasonCreated: 'exception', scheduled: iso(now) };
      rec.runs.push(run);
    } else if (run.state !== 'pending' && run.state !== 'running') {
      return false;
    }
    this.#resolveRun(rec, run, 'exception', reason, now);
    return true;
  }

  #resolveRun(
    rec: TaskRecord,
    run: Run,
    state: 'completed' | 'failed' | 'exception',
    reason: string,
    now: number,
  ) {
    if (run.state === 'pending') {
      this.#q('DELETE FROM pending WHERE task_id = ? AND run_id = ?').run(rec.taskId, run.runId);
    }
    run.state = state;
    run.reasonResolved = reason;
    run.resolved = iso(now);
    const eventName =
      state === 'completed' ? 'task-completed' : state === 'failed' ? 'task-failed' : 'task-exception';
    const retryKind =
      reason === 'claim-expired' || reason === 'worker-shutdown'
        ? 'retry'
        : reason === 'intermittent-task'
          ? 'task-retry'
          : undefined;
    const body: Record<string, unknown> = { taskId: rec.taskId, runId: run.runId };
    if (run.workerGroup !== undefined) body.workerGroup = run.workerGroup;
    if (run.workerId !== undefined) body.workerId = run.workerId;
    if (retryKind && rec.retriesLeft > 0 && now < rec.deadline) {
      rec.retriesLeft -= 1;
      this.#emit(eventName, { ...body, status: this.status(rec) });
      this.#makePending(rec, retryKind, now);
      this.#save(rec);
      this.#emit('task-resolved', { ...body, status: this.status(rec) });
      return;
    }
    rec.open = false;
    this.#save(rec);
    const status = this.status(rec);
    this.#emit(eventName, { ...body, status });
    this.#emit('task-resolved', { ...body, status });
    this.#resolveDependents(rec.taskId, state, now);
  }

  #resolveDependents(taskId: string, state: string, now: number): void {
    const rows = this.#q('SELECT dependent FROM dependencies WHERE required = ? AND satisfied = 0').all(
      taskId,
    ) as Array<{ dependent: string }>;
    for (const { dependent } of rows) {
      if (dependent === taskId) continue;
      const dep = this.#load(dependent);
      if (!dep) continue;
      if (state !== 'completed' && dep.def.requires !== 'all-resolved') continue;
      this.#q('UPDATE dependencies SET satisfied = 1 WHERE required = ? AND dependent = ?').run(
        taskId,
        dependent,
      );
      this.#maybeSchedule(dep, now);
    }
  }

  #maybeSchedule(rec: TaskRecord, now: number): void {
    if (rec.runs.length > 0 || !rec.open || now >= rec.deadline) return;
    const blocking = this.#q(
      'SELECT COUNT(*) AS n FROM dependencies WHERE dependent = ? AND satisfied = 0',
    ).get(rec.taskId) as { n: number };
    if (blocking.n > 0) return;
    this.#makePending(rec, 'scheduled', now);
    this.#save(rec);
  }

  // ---------------------------------------------------------------- resolvers (claim expiry, deadline)

  #armTimer(at: number): void {
    if (this.#closed || at >= this.#timerAt) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    const delay = Math.min(Math.max(0, at - Date.now()), 3600_000);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Number.POSITIVE_INFINITY;
      this.#runResolvers();
    }, delay);
    this.#timer.unref();
  }

  #runResolvers(): void {
    if (this.#closed) return;
    try {
      const now = Date.now();
      this.#tx(() => {
        const expired = this.#q(
          'SELECT task_id FROM tasks WHERE taken_until IS NOT NULL AND taken_until <= ? LIMIT 1000',
        ).all(now) as Array<{ task_id: string }>;
        for (const { task_id } of expired) {
          const rec = this.#load(task_id)!;
          const run = rec.runs.at(-1);
          if (run?.state !== 'running') {
            this.#save(rec);
            continue;
          }
          if (now >= rec.deadline) this.#resolveRun(rec, run, 'exception', 'deadline-exceeded', now);
          else this.#resolveRun(rec, run, 'exception', 'claim-expired', now);
        }
        const overdue = this.#q('SELECT task_id FROM tasks WHERE open = 1 AND deadline <= ? LIMIT 1000').all(
          now - this.#o.deadlineDelayMs,
        ) as Array<{ task_id: string }>;
        for (const { task_id } of overdue) {
          const rec = this.#load(task_id)!;
          if (!this.#resolveOpenRun(rec, 'deadline-exceeded', now)) {
            rec.open = false;
            this.#save(rec);
          }
        }
      });
    } catch (err) {
      this.#o.logger.error('claim/deadline resolver failed', err);
    }
    const next = this.#q(
      'SELECT MIN(taken_until) AS a, (SELECT MIN(deadline) FROM tasks WHERE open = 1) AS b FROM tasks WHERE taken_until IS NOT NULL',
    ).get() as { a: number | null; b: number | null };
    const candidates = [next.a, next.b === null ? null : next.b + this.#o.deadlineDelayMs].filter(
      (x): x is number => x !== null,
    );
    if (candidates.length > 0) this.#armTimer(Math.max(Math.min(...candidates), Date.now() + 5));
  }

  // ---------------------------------------------------------------- expiry

  /**
   * Deletes what has passed its `expires`: tasks (with their runs, dependencies and artifacts), artifacts,
   * objects and their bytes, secrets. Like the real queue's expiry crons; returns how many rows went.
   */
  expire(now = Date.now()): { tasks: number; artifacts: number; objects: number } {
    const files: string[] = [];
    const counts = this.#tx(() => {
      let tasks = 0;
      for (;;) {
        const rows = this.#q('SELECT task_id FROM tasks WHERE expires < ? LIMIT 500').all(now) as Array<{
          task_id: string;
        }>;
        if (rows.length === 0) break;
        for (const { task_id } of rows) {
          this.#q('DELETE FROM pending WHERE task_id = ?').run(task_id);
          this.#q('DELETE FROM dependencies WHERE dependent = ?').run(task_id);
          this.#q('DELETE FROM dependencies WHERE required = ?').run(task_id);
          this.#q('DELETE FROM artifacts WHERE task_id = ?').run(task_id);
          this.#q('DELETE FROM tasks WHERE task_id = ?').run(task_id);
          this.#definitions.delete(task_id);
          tasks += 1;
        }
      }
      const artifacts = Number(this.#q('DELETE FROM artifacts WHERE expires < ?').run(now).changes);
      const objects = this.#q('SELECT name, file FROM objects WHERE expires < ?').all(now) as Array<{
        name: string;
        file: string | null;
      }>;
      for (const o of objects) {
        this.#q('DELETE FROM objects WHERE name = ?').run(o.name);
        if (o.file) files.push(o.file);
      }
      this.#q('DELETE FROM secrets WHERE expires < ?').run(now);
      this.#q('DELETE FROM task_groups WHERE expires < ?').run(now);
      return { tasks, artifacts, objects: objects.length };
    });
    for (const f of files) rmSync(f, { force: true });
    if (counts.tasks + counts.artifacts + counts.objects > 0) this.#o.logger.info('expired', counts);
    return counts;
  }

  // ---------------------------------------------------------------- tasks

  createTask(taskId: string, body: unknown, scopes: readonly string[]): Record<string, unknown> {
    const now = Date.now();
    const def = normalizeTaskDefinition(taskId, body, {
      now,
      maxTaskDeadlineDays: this.#o.maxTaskDeadlineDays,
    });
    requireScopes(scopes, {
      AllOf: [
        ...def.scopes,
        ...def.routes.map((r) => `queue:route:${r}`),
        `queue:create-task:project:${def.projectId}`,
        `queue:scheduler-id:${def.schedulerId}`,
        { AnyOf: prioritiesAtOrAbove(def.priority).map((p) => `queue:create-task:${p}:${def.taskQueueId}`) },
      ],
    });
    return this.#tx(() => this.#insertTask(taskId, def, now));
  }

  #insertTask(taskId: string, def: TaskDefinition, now: number): Record<string, unknown> {
    // a task expired and deleted may come back under its old taskId with another definition
    this.#definitions.delete(taskId);
    const existing = this.#load(taskId);
    if (existing) {
      if (canonicalJson(existing.def) === canonicalJson(def)) return { status: this.status(existing) };
      throw conflict(`taskId ${taskId} already used by another task definition`);
    }
    const deadline = Date.parse(def.deadline);
    const group = this.#taskGroup(def.taskGroupId);
    if (group && group.scheduler_id !== def.schedulerId) {
      throw conflict(
        `taskGroupId ${def.taskGroupId} already has schedulerId ${group.scheduler_id}; every task in a group must share it`,
      );
    }
    if (group?.sealed != null) throw conflict(`Task group ${def.taskGroupId} is sealed`);
    const taskExpires = Date.parse(def.expires);
    if (!group) {
      this.#q(
        'INSERT INTO task_groups (task_group_id, scheduler_id, expires, sealed) VALUES (?, ?, ?, NULL)',
      ).run(def.taskGroupId, def.schedulerId, taskExpires);
    } else if (taskExpires > group.expires) {
      this.#q('UPDATE task_groups SET expires = ? WHERE task_group_id = ?').run(taskExpires, def.taskGroupId);
    }
    const deps: Array<{ id: string; satisfied: boolean }> = [];
    def.dependencies.forEach((depId, i) => {
      if (depId === taskId) {
        deps.push({ id: depId, satisfied: false });
        return;
      }
      const dep = this.#load(depId);
      if (!dep) throw invalidInput(`/dependencies/${i}: task ${depId} does not exist`);
      if (dep.expires < deadline) {
        throw invalidInput(`/dependencies/${i}: task ${depId} expires before this task's deadline`);
      }
      const last = dep.runs.at(-1);
      const resolved = !dep.open && last !== undefined;
      deps.push({
        id: depId,
        satisfied: resolved && (last.state === 'completed' || def.requires === 'all-resolved'),
      });
    });
    this.#q(
      `INSERT INTO tasks (task_id, definition, task_queue_id, scheduler_id, task_group_id, project_id, priority,
          requires, retries, retries_left, deadline, expires, runs, open, taken_until)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]', 1, NULL)`,
    ).run(
      taskId,
      JSON.stringify(def),
      def.taskQueueId,
      def.schedulerId,
      def.taskGroupId,
      def.projectId,
      priorityValue(def.priority),
      def.requires,
      def.retries,
      def.retries,
      deadline,
      Date.parse(def.expires),
    );
    const insertDep = this.#q(
      'INSERT OR IGNORE INTO dependencies (required, dependent, satisfied) VALUES (?, ?, ?)',
    );
    for (const d of deps) insertDep.run(d.id, taskId, d.satisfied ? 1 : 0);
    const rec = this.#load(taskId)!;
    this.#emit('task-defined', { taskId, status: this.status(rec) });
    this.#maybeSchedule(rec, now);
    this.#armTimer(deadline + this.#o.deadlineDelayMs);
    return { status: this.status(rec) };
  }

  /** Bulk insert for benches and tests: n tasks from a template, in one transaction, without HTTP. */
  createTasks(n: number, template: Record<string, unknown> = {}): string[] {
    const now = Date.now();
    const ids: string[] = [];
    this.#tx(() => {
      for (let i = 0; i < n; i++) {
        const taskId = slugid();
        const body = {
          taskQueueId: 'local/bench',
          created: iso(now),
          deadline: iso(now + 24 * 3600_000),
          payload: {},
          metadata: {
            name: 'bulk task',
            description: '',
            owner: 'local-queue',
            source: 'https://localhost/',
          },
          ...template,
        };
        const def = normalizeTaskDefinition(taskId, body, {
          now,
          maxTaskDeadlineDays: this.#o.maxTaskDeadlineDays,
        });
        this.#insertTask(taskId, def, now);
        ids.push(taskId);
      }
    });
    return ids;
  }

  task(taskId: string, scopes: readonly string[]): TaskDefinition {
    requireScopes(scopes, `queue:get-task:${taskId}`);
    return this.#mustLoad(taskId).def;
  }

  getStatus(taskId: string, scopes: readonly string[]): Record<string, unknown> {
    requireScopes(scopes, `queue:status:${taskId}`);
    return { status: this.status(this.#mustLoad(taskId)) };
  }

  #page(ids: string[], limit: number): { tasks: Array<Record<string, unknown>>; continuationToken?: string } {
    const page = ids.slice(0, limit);
    const tasks = page.map((id) => {
      const rec = this.#load(id)!;
      return { status: this.status(rec), task: rec.def };
    });
    return ids.length > limit ? { tasks, continuationToken: page.at(-1)! } : { tasks };
  }

  #limit(query: URLSearchParams): number {
    return Math.min(Math.max(Number(query.get('limit') ?? 1000) || 1000, 1), 1000);
  }

  #taskGroup(taskGroupId: string) {
    return this.#q('SELECT * FROM task_groups WHERE task_group_id = ?').get(taskGroupId) as
      | { task_group_id: string; scheduler_id: string; expires: number; sealed: number | null }
      | undefined;
  }

  #taskGroupInfo(taskGroupId: string): Record<string, unknown> {
    const g = this.#taskGroup(taskGroupId);
    if (!g) throw notFound(`Task group ${taskGroupId} not found`);
    const info: Record<string, unknown> = {
      taskGroupId,
      schedulerId: g.scheduler_id,
      expires: iso(g.expires),
    };
    if (g.sealed !== null) info.sealed = iso(g.sealed);
    return info;
  }

  getTaskGroup(taskGroupId: string, scopes: readonly string[]): Record<string, unknown> {
    requireScopes(scopes, `queue:list-task-group:${taskGroupId}`);
    return this.#taskGroupInfo(taskGroupId);
  }

  sealTaskGroup(taskGroupId: string, scopes: readonly string[]): Record<string, unknown> {
    const g = this.#taskGroup(taskGroupId);
    if (!g) throw notFound(`Task group ${taskGroupId} not found`);
    requireScopes(scopes, `queue:seal-task-group:${g.scheduler_id}/${taskGroupId}`);
    return this.#tx(() => {
      this.#q('UPDATE task_groups SET sealed = ? WHERE task_group_id = ? AND sealed IS NULL').run(
        Date.now(),
        taskGroupId,
      );
      const info = this.#taskGroupInfo(taskGroupId);
      this.#emit('task-group-sealed', { taskGroupId, schedulerId: g.scheduler_id });
      return info;
    });
  }

  /** Cancels every unresolved task of a sealed group (409 if not sealed), like cancelTask for each. */
  cancelTaskGroup(taskGroupId: string, scopes: readonly string[]): Record<string, unknown> {
    const g = this.#taskGroup(taskGroupId);
    if (!g) throw notFound(`Task group ${taskGroupId} not found`);
    requireScopes(scopes, `queue:cancel-task-group:${g.scheduler_id}/${taskGroupId}`);
    if (g.sealed === null)
      throw conflict(`Task group ${taskGroupId} must be sealed (sealTaskGroup) before it is canceled`);
    return this.#tx(() => {
      const now = Date.now();
      const ids = this.#q(
        'SELECT task_id FROM tasks WHERE task_group_id = ? AND open = 1 AND deadline > ?',
      ).all(taskGroupId, now) as Array<{ task_id: string }>;
      const canceled: string[] = [];
      for (const { task_id } of ids) {
        const rec = this.#load(task_id)!;
        if (this.#resolveOpenRun(rec, 'canceled', now)) canceled.push(task_id);
      }
      const size = this.#q('SELECT COUNT(*) AS n FROM tasks WHERE task_group_id = ?').get(taskGroupId) as {
        n: number;
      };
      return { taskGroupId, taskGroupSize: size.n, cancelledCount: canceled.length, taskIds: canceled };
    });
  }

  listTaskGroup(
    taskGroupId: string,
    query: URLSearchParams,
    scopes: readonly string[],
  ): Record<string, unknown> {
    requireScopes(scopes, `queue:list-task-group:${taskGroupId}`);
    const limit = this.#limit(query);
    const rows = this.#q(
      'SELECT task_id FROM tasks WHERE task_group_id = ? AND task_id > ? ORDER BY task_id LIMIT ?',
    ).all(taskGroupId, query.get('continuationToken') ?? '', limit + 1) as Array<{ task_id: string }>;
    return {
      ...this.#taskGroupInfo(taskGroupId),
      ...this.#page(
        rows.map((r) => r.task_id),
        limit,
      ),
    };
  }

  listDependentTasks(
    taskId: string,
    query: URLSearchParams,
    scopes: readonly string[],
  ): Record<string, unknown> {
    requireScopes(scopes, `queue:list-dependent-tasks:${taskId}`);
    this.#mustLoad(taskId);
    const limit = this.#limit(query);
    const rows = this.#q(
      'SELECT dependent FROM dependencies WHERE required = ? AND dependent > ? ORDER BY dependent LIMIT ?',
    ).all(taskId, query.get('continuationToken') ?? '', limit + 1) as Array<{ dependent: string }>;
    return {
      taskId,
      ...this.#page(
        rows.map((r) => r.dependent),
        limit,
      ),
    };
  }

  #threeWay(rec: TaskRecord, verb: string): ScopeExpr {
    const { schedulerId, taskGroupId, projectId } = rec.def;
    return {
      AnyOf: [
        `queue:${verb}:${schedulerId}/${taskGroupId}/${rec.taskId}`,
        `queue:${verb}-in-project:${projectId}`,
        { AllOf: [`queue:${verb}`, `assume:scheduler-id:${schedulerId}/${taskGroupId}`] },
      ],
    };
  }

  cancelTask(taskId: string, scopes: readonly string[]): Record<string, unknown> {
    const rec0 = this.#mustLoad(taskId);
    requireScopes(scopes, this.#threeWay(rec0, 'cancel-task'));
    return this.#tx(() => {
      const now = Date.now();
      const rec = this.#mustLoad(taskId);
      if (now >= rec.deadline) throw conflict(`Task ${taskId} cannot be canceled: its deadline has passed`);
      this.#resolveOpenRun(rec, 'canceled', now);
      return { status: this.status(rec) };
    });
  }

  scheduleTask(taskId: string, scopes: readonly string[]): Record<string, unknown> {
    const rec0 = this.#mustLoad(taskId);
    requireScopes(scopes, this.#threeWay(rec0, 'schedule-task'));
    return this.#tx(() => {
      const now = Date.now();
      const rec = this.#mustLoad(taskId);
      if (now >= rec.deadline) throw conflict(`Task ${taskId} cannot be scheduled: its deadline has passed`);
      if (rec.runs.length === 0 && rec.open) {
        this.#q('UPDATE dependencies SET satisfied = 1 WHERE dependent = ?').run(taskId);
        this.#makePending(rec, 'scheduled', now);
        this.#save(rec);
      }
      return { status: this.status(rec) };
    });
  }

  rerunTask(taskId: string, scopes: readonly string[]): Record<string, unknown> {
    const rec0 = this.#mustLoad(taskId);
    requireScopes(scopes, this.#threeWay(rec0, 'rerun-task'));
    return this.#tx(() => {
      const now = Date.now();
      const rec = this.#mustLoad(taskId);
      if (now >= rec.deadline) throw conflict(`Task ${taskId} cannot be rerun: its deadline has passed`);
      const last = rec.runs.at(-1);
      if (!last) throw conflict(`Task ${taskId} has no runs yet; use scheduleTask`);
      if (last.state === 'pending' || last.state === 'running') return { status: this.status(rec) };
      if (rec.runs.length >= MAX_RUNS) throw conflict(`Task ${taskId} already has ${MAX_RUNS} runs`);
      rec.retriesLeft = Math.max(0, Math.min(rec.def.retries, 48 - last.runId));
      this.#makePending(rec, 'rerun', now);
      this.#save(rec);
      return { status: this.status(rec) };
    });
  }

  // ---------------------------------------------------------------- worker interface

  #taskCredentials(taskId: string, run: Run, def: TaskDefinition, takenUntil: number) {
    return createTemporaryCredentials({
      clientId: `task-client/${taskId}/${run.runId}/on/${run.workerGroup}/${run.workerId}/until/${Math.floor(takenUntil / 1000)}`,
      start: new Date(Date.now() - 15 * MIN),
      expiry: new Date(takenUntil),
      scopes: [
        `queue:reclaim-task:${taskId}/${run.runId}`,
        `queue:resolve-task:${taskId}/${run.runId}`,
        `queue:create-artifact:${taskId}/${run.runId}`,
        ...def.scopes,
      ],
      credentials: this.#o.root,
    });
  }

  async claimWork(
    taskQueueId: string,
    body: unknown,
    scopes: readonly string[],
    signal: AbortSignal,
  ): Promise<Record<string, unknown>> {
    if (!TASK_QUEUE_RE.test(taskQueueId)) {
      throw badRequest(
        `taskQueueId ${JSON.stringify(taskQueueId)} is not <provisionerId>/<workerType>`,
        'InvalidRequestArguments',
      );
    }
    if (!isObject(body)) throw invalidInput('Schema validation failed: body must be an object');
    const { workerGroup, workerId } = body;
    const tasks = body.tasks ?? 1;
    for (const [k, v] of [
      ['workerGroup', workerGroup],
      ['workerId', workerId],
    ] as const) {
      if (typeof v !== 'string' || !IDENT_RE.test(v)) throw invalidInput(`/${k}: must match ${IDENT_RE}`);
    }
    if (typeof tasks !== 'number' || !Number.isInteger(tasks) || tasks < 1 || tasks > 32) {
      throw invalidInput('/tasks: must be an integer 1..32');
    }
    requireScopes(scopes, {
      AllOf: [`queue:claim-work:${taskQueueId}`, `queue:worker-id:${workerGroup}/${workerId}`],
    });
    const until = Date.now() + this.#o.claimWorkTimeoutMs;
    for (;;) {
      if (this.#closed) return { tasks: [] };
      const claims = this.#tryClaim(taskQueueId, workerGroup as string, workerId as string, tasks);
      if (claims.length > 0) return { tasks: claims };
      const remaining = until - Date.now();
      if (remaining <= 0 || signal.aborted || this.#closed) return { tasks: [] };
      await new Promise<void>((resolve) => {
        let set = this.#waiters.get(taskQueueId);
        if (!set) {
          set = new Set();
          this.#waiters.set(taskQueueId, set);
        }
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          set.delete(done);
          if (set.size === 0 && this.#waiters.get(taskQueueId) === set) this.#waiters.delete(taskQueueId);
          resolve();
        };
        const timer = setTimeout(done, remaining);
        signal.addEventListener('abort', done);
        set.add(done);
      });
    }
  }

  #tryClaim(
    taskQueueId: string,
    workerGroup: string,
    workerId: string,
    n: number,
  ): Array<Record<string, unknown>> {
    return this.#tx(() => {
      const now = Date.now();
      const rows = this.#q(
        'SELECT seq, task_id, run_id FROM pending WHERE task_queue_id = ? AND deadline > ? ORDER BY priority DESC, seq LIMIT ?',
      ).all(taskQueueId, now, n) as Array<{ seq: number; task_id: string; run_id: number }>;
      const claims: Array<Record<string, unknown>> = [];
      for (const row of rows) {
        this.#q('DELETE FROM pending WHERE seq = ?').run(row.seq);
        const rec = this.#load(row.task_id);
        const run = rec?.runs[row.run_id];
        if (!rec || !run || run.state !== 'pending' || row.run_id !== rec.runs.length - 1) continue;
        const takenUntil = now + this.#o.claimTimeoutMs;
        run.state = 'running';
        run.workerGroup = workerGroup;
        run.workerId = workerId;
        run.started = iso(now);
        run.takenUntil = iso(takenUntil);
        this.#save(rec);
        const status = this.status(rec);
        const payload = {
          taskId: rec.taskId,
          runId: run.runId,
          workerGroup,
          workerId,
          takenUntil: run.takenUntil,
        };
        this.#emit('task-running', { ...payload, status });
        this.#emit('task-claimed', { ...payload, status });
        claims.push({
          status,
          runId: run.runId,
          workerGroup,
          workerId,
          takenUntil: run.takenUntil,
          task: rec.def,
          credentials: this.#taskCredentials(rec.taskId, run, rec.def, takenUntil),
        });
      }
      return claims;
    });
  }

  /** pendingTasks (deprecated) and taskQueueCounts. */
  queueCounts(taskQueueId: string, scopes: readonly string[], withClaimed: boolean): Record<string, unknown> {
    requireScopes(
      scopes,
      withClaimed
        ? { AllOf: [`queue:pending-count:${taskQueueId}`, `queue:claimed-count:${taskQueueId}`] }
        : `queue:pending-count:${taskQueueId}`,
    );
    const pending = this.#q('SELECT COUNT(*) AS n FROM pending WHERE task_queue_id = ? AND deadline > ?').get(
      taskQueueId,
      Date.now(),
    ) as { n: number };
    if (!withClaimed) {
      const [provisionerId, workerType] = taskQueueId.split('/');
      return { provisionerId, workerType, taskQueueId, pendingTasks: pending.n };
    }
    const claimed = this.#q(
      'SELECT COUNT(*) AS n FROM tasks WHERE taken_until IS NOT NULL AND task_queue_id = ?',
    ).get(taskQueueId) as { n: number };
    return { taskQueueId, pendingTasks: pending.n, claimedTasks: claimed.n };
  }

  #runOf(rec: TaskRecord, runId: number): Run {
    const run = rec.runs[runId];
    if (!run) throw notFound(`Run ${runId} of task ${rec.taskId} not found`);
    return run;
  }

  reclaimTask(taskId: string, runId: number, scopes: readonly string[]): Record<string, unknown> {
    requireScopes(scopes, `queue:reclaim-task:${taskId}/${runId}`);
    return this.#tx(() => {
      const now = Date.now();
      const rec = this.#mustLoad(taskId);
      const run = this.#runOf(rec, runId);
      if (now >= rec.deadline) throw conflict(`Task ${taskId} has passed its deadline`);
      if (runId !== rec.runs.length - 1)
        throw conflict(`Run ${runId} is not the latest run of task ${taskId}`);
      if (run.state !== 'running') {
        throw conflict(
          `Run ${runId} of task ${taskId} is ${run.state} (${run.reasonResolved ?? 'not running'})`,
        );
      }
      const takenUntil = now + this.#o.claimTimeoutMs;
      run.takenUntil = iso(takenUntil);
      this.#save(rec);
      return {
        status: this.status(rec),
        runId,
        workerGroup: run.workerGroup,
        workerId: run.workerId,
        takenUntil: run.takenUntil,
        credentials: this.#taskCredentials(taskId, run, rec.def, takenUntil),
      };
    });
  }

  resolveTask(
    taskId: string,
    runId: number,
    target: 'completed' | 'failed' | 'exception',
    body: unknown,
    scopes: readonly string[],
  ): Record<string, unknown> {
    let reason: string = target;
    if (target === 'exception') {
      const r = isObject(body) ? body.reason : undefined;
      if (typeof r !== 'string' || !EXCEPTION_REASONS.has(r)) {
        throw invalidInput(`/reason: must be one of ${[...EXCEPTION_REASONS].join(', ')}`);
      }
      reason = r;
    } else if (target === 'completed' && isObject(body) && body.success === false) {
      target = 'failed';
      reason = 'failed';
    }
    requireScopes(scopes, `queue:resolve-task:${taskId}/${runId}`);
    return this.#tx(() => {
      const now = Date.now();
      const rec = this.#mustLoad(taskId);
      const run = this.#runOf(rec, runId);
      if (run.state === target && (target !== 'exception' || run.reasonResolved === reason)) {
        return { status: this.status(rec) };
      }
      if (runId !== rec.runs.length - 1)
        throw conflict(`Run ${runId} is not the latest run of task ${taskId}`);
      if (run.state !== 'running') {
        throw conflict(
          `Run ${runId} of task ${taskId} is ${run.state} (${run.reasonResolved ?? ''}), not running`,
        );
      }
      this.#resolveRun(rec, run, target, reason, now);
      return { status: this.status(rec) };
    });
  }

  // ---------------------------------------------------------------- artifacts

  createArtifact(
    taskId: string,
    runId: number,
    name: string,
    body: unknown,
    scopes: readonly string[],
  ): Record<string, unknown> {
    requireScopes(scopes, `queue:create-artifact:${taskId}/${runId}`);
    if (!/^[\x20-\x7e]+$/.test(name))
      throw badRequest('artifact name must be printable ASCII', 'InvalidRequestArguments');
    if (!isObject(body)) throw invalidInput('Schema validation failed: body must be an object');
    const storageType = body.storageType;
    const expires = parseDate(body.expires, '/expires');
    const contentType = body.contentType ?? 'application/binary';
    if (typeof contentType !== 'string' || contentType.length > 255) {
      throw invalidInput('/contentType: must be a string of at most 255 characters');
    }
    let details: Record<string, unknown>;
    switch (storageType) {
      case 'object':
      case 's3':
        details = {};
        if (
          body.contentLength !== undefined &&
          !(Number.isInteger(body.contentLength) && (body.contentLength as number) >= 0)
        ) {
          throw invalidInput('/contentLength: must be a non-negative integer');
        }
        break;
      case 'reference':
        if (typeof body.url !== 'string' || !/^[a-z][a-z0-9+.-]*:/i.test(body.url)) {
          throw invalidInput('/url: must be an absolute URL');
        }
        details = { url: body.url };
        break;
      case 'link':
        if (typeof body.artifact !== 'string' || body.artifact.length === 0) {
          throw invalidInput('/artifact: must name another artifact of the same run');
        }
        details = { artifact: body.artifact };
        break;
      case 'error':
        if (typeof body.reason !== 'string' || !ARTIFACT_ERROR_REASONS.has(body.reason)) {
          throw invalidInput(`/reason: must be one of ${[...ARTIFACT_ERROR_REASONS].join(', ')}`);
        }
        if (typeof body.message !== 'string' || body.message.length > 4096) {
          throw invalidInput('/message: must be a string of at most 4096 characters');
        }
        details = { reason: body.reason, message: body.message };
        break;
      default:
        throw invalidInput('/storageType: must be one of object, s3, reference, link, error');
    }
    return this.#tx(() => {
      const now = Date.now();
      if (expires < now - 15 * MIN) throw badRequest('/expires: must not be in the past');
      const rec = this.#load(taskId);
      const run = rec?.runs[runId];
      if (!rec || !run) throw badRequest(`Task ${taskId} run ${runId} does not exist`);
      if (run.workerGroup === undefined) throw badRequest(`Run ${runId} of task ${taskId} was never claimed`);
      if (expires > rec.expires) throw badRequest('/expires: must not be after the task expires');
      const allowed =
        run.state === 'running' ||
        (run.state === 'exception' &&
          run.resolved !== undefined &&
          Date.parse(run.resolved) + ARTIFACT_ALLOWANCE_MS > now);
      if (!allowed)
        throw conflict(`Run ${runId} of task ${taskId} is ${run.state}: no artifacts can be created`);

      const objectName = `t/${taskId}/${runId}/${name}`;
      const existing = this.#q('SELECT * FROM artifacts WHERE task_id = ? AND run_id = ? AND name = ?').get(
        taskId,
        runId,
        name,
      ) as ArtifactRow | undefined;
      if (existing) {
        const old = JSON.parse(existing.details) as Record<string, unknown>;
        const same =
          existing.storage_type === storageType &&
          existing.content_type === contentType &&
          canonicalJson(stripUpload(old)) === canonicalJson(details);
        const replaceable =
          existing.storage_type === 'reference' && (storageType === 'reference' || storageType === 'link');
        if (!same && !replaceable) throw conflict(`Artifact ${name} already exists with different content`);
        if (same && expires < existing.expires)
          throw conflict(`Artifact ${name}: expires may only move later`);
        if (same && storageType === 'object') details = old;
      }
      if (storageType === 'object' && details.uploadId === undefined) {
        details = { uploadId: slugid(), objectName, projectId: rec.def.projectId };
      }
      if (storageType === 'object') {
        this.#lockInUpload(objectName, rec.def.projectId, details.uploadId as string, expires);
      }
      if (storageType === 's3') details = { objectName };
      const present = storageType === 'object' ? (existing?.present ?? 0) : 1;
      this.#q(
        `INSERT OR REPLACE INTO artifacts (task_id, run_id, name, storage_type, content_type, expires, present, details)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(taskId, runId, name, storageType, contentType, expires, present, JSON.stringify(details));
      if (storageType === 'reference' || storageType === 'link' || storageType === 'error') {
        this.#emitArtifactCreated(rec, run, name, storageType, expires, contentType);
      }
      switch (storageType) {
        case 'object':
          return {
            storageType,
            name: objectName,
            projectId: rec.def.projectId,
            uploadId: details.uploadId,
            expires: iso(expires),
            credentials: createTemporaryCredentials({
              start: new Date(now - 15 * MIN),
              expiry: new Date(Math.min(expires, now + 24 * 3600_000)),
              scopes: [`object:upload:${rec.def.projectId}:${objectName}`],
              credentials: this.#o.root,
            }),
          };
        case 's3': {
          this.#ensureObject(objectName, rec.def.projectId, `s3-${slugid()}`, expires, contentType);
          const putExpires = now + 45 * MIN;
          return {
            storageType,
            putUrl: this.dataUrl('put', objectName, putExpires),
            contentType,
            expires: iso(putExpires),
          };
        }
        default:
          return { storageType };
      }
    });
  }

  #emitArtifactCreated(
    rec: TaskRecord,
    run: Run,
    name: string,
    storageType: string,
    expires: number,
    contentType: string,
  ) {
    this.#emit('artifact-created', {
      taskId: rec.taskId,
      runId: run.runId,
      workerGroup: run.workerGroup,
      workerId: run.workerId,
      artifact: { storageType, name, expires: iso(expires), contentType },
      status: this.status(rec),
    });
  }

  finishArtifact(
    taskId: string,
    runId: number,
    name: string,
    body: unknown,
    scopes: readonly string[],
  ): void {
    requireScopes(scopes, `queue:create-artifact:${taskId}/${runId}`);
    if (!isObject(body) || typeof body.uploadId !== 'string') throw invalidInput('/uploadId: is required');
    this.#tx(() => {
      const rec = this.#mustLoad(taskId);
      const run = this.#runOf(rec, runId);
      const art = this.#q('SELECT * FROM artifacts WHERE task_id = ? AND run_id = ? AND name = ?').get(
        taskId,
        runId,
        name,
      ) as ArtifactRow | undefined;
      if (!art) throw notFound(`Artifact ${name} not found`);
      if (art.storage_type !== 'object') throw badRequest(`Artifact ${name} is not an object artifact`);
      const details = JSON.parse(art.details) as { uploadId: string; objectName: string };
      if (details.uploadId !== body.uploadId) throw badRequest(`uploadId does not match artifact ${name}`);
      const obj = this.#object(details.objectName);
      if (obj?.finished !== 1) throw badRequest(`The object for artifact ${name} is not finished uploading`);
      this.#q('UPDATE artifacts SET present = 1 WHERE task_id = ? AND run_id = ? AND name = ?').run(
        taskId,
        runId,
        name,
      );
      this.#emitArtifactCreated(rec, run, name, 'object', art.expires, art.content_type);
    });
  }

  #latestRunId(rec: TaskRecord): number {
    if (rec.runs.length === 0) throw notFound(`Task ${rec.taskId} has no runs`);
    return rec.runs.length - 1;
  }

  /** Follows links (checking `queue:get-artifact:<name>` for every name) to a non-link artifact. */
  #resolveArtifact(taskId: string, runId: number | 'latest', name: string, scopes: readonly string[]) {
    const rec = this.#mustLoad(taskId);
    const rid = runId === 'latest' ? this.#latestRunId(rec) : runId;
    this.#runOf(rec, rid);
    const seen = new Set<string>();
    let current = name;
    for (;;) {
      requireScopes(scopes, `queue:get-artifact:${current}`);
      if (seen.has(current)) throw badRequest(`Artifact link cycle at ${current}`);
      seen.add(current);
      const art = this.#q('SELECT * FROM artifacts WHERE task_id = ? AND run_id = ? AND name = ?').get(
        taskId,
        rid,
        current,
      ) as ArtifactRow | undefined;
      if (art?.present !== 1) throw notFound(`Artifact ${current} not found`);
      if (art.expires < Date.now())
        throw new ApiError(410, 'ResourceExpired', `Artifact ${current} has expired`);
      const details = JSON.parse(art.details) as Record<string, string>;
      if (art.storage_type === 'link') {
        current = details.artifact!;
        continue;
      }
      return { art, details, runId: rid };
    }
  }

  /** getArtifact / getLatestArtifact: `{kind:'redirect', storageType, url}` or `{kind:'error', reason, message}`. */
  getArtifact(taskId: string, runId: number | 'latest', name: string, scopes: readonly string[]) {
    const { art, details } = this.#resolveArtifact(taskId, runId, name, scopes);
    switch (art.storage_type) {
      case 'error':
        return { kind: 'error' as const, reason: details.reason!, message: details.message! };
      case 'reference':
        return { kind: 'redirect' as const, storageType: 'reference', url: details.url! };
      default:
        return {
          kind: 'redirect' as const,
          storageType: art.storage_type,
          url: this.dataUrl('get', details.objectName!, Date.now() + 3600_000),
        };
    }
  }

  artifactContent(taskId: string, runId: number | 'latest', name: string, scopes: readonly string[]) {
    const { art, details } = this.#resolveArtifact(taskId, runId, name, scopes);
    const now = Date.now();
    switch (art.storage_type) {
      case 'error':
        return { storageType: 'error', reason: details.reason, message: details.message };
      case 'reference':
        return { storageType: 'reference', url: details.url };
      case 's3':
        return { storageType: 's3', url: this.dataUrl('get', details.objectName!, now + 3600_000) };
      default:
        return {
          storageType: 'object',
          name: details.objectName,
          credentials: createTemporaryCredentials({
            start: new Date(now - 15 * MIN),
            expiry: new Date(now + 3600_000),
            scopes: [`object:download:${details.objectName}`],
            credentials: this.#o.root,
          }),
        };
    }
  }

  #artifactEntry(a: ArtifactRow) {
    return {
      storageType: a.storage_type,
      name: a.name,
      expires: iso(a.expires),
      contentType: a.content_type,
    };
  }

  artifactInfo(taskId: string, runId: number | 'latest', name: string, scopes: readonly string[]) {
    requireScopes(scopes, `queue:get-artifact:${name}`);
    const rec = this.#mustLoad(taskId);
    const rid = runId === 'latest' ? this.#latestRunId(rec) : runId;
    this.#runOf(rec, rid);
    const art = this.#q(
      'SELECT * FROM artifacts WHERE task_id = ? AND run_id = ? AND name = ? AND present = 1',
    ).get(taskId, rid, name) as ArtifactRow | undefined;
    if (!art) throw notFound(`Artifact ${name} not found`);
    return this.#artifactEntry(art);
  }

  listArtifacts(
    taskId: string,
    runId: number | 'latest',
    query: URLSearchParams,
    scopes: readonly string[],
  ): Record<string, unknown> {
    requireScopes(
      scopes,
      runId === 'latest' ? `queue:list-artifacts:${taskId}` : `queue:list-artifacts:${taskId}:${runId}`,
    );
    const rec = this.#mustLoad(taskId);
    const rid = runId === 'latest' ? this.#latestRunId(rec) : runId;
    this.#runOf(rec, rid);
    const limit = Math.min(Math.max(Number(query.get('limit') ?? 1000) || 1000, 1), 1000);
    const after = query.get('continuationToken') ?? '';
    const rows = this.#q(
      'SELECT * FROM artifacts WHERE task_id = ? AND run_id = ? AND present = 1 AND name > ? ORDER BY name LIMIT ?',
    ).all(taskId, rid, after, limit + 1) as unknown as ArtifactRow[];
    const page = rows.slice(0, limit);
    const result: Record<string, unknown> = { artifacts: page.map((a) => this.#artifactEntry(a)) };
    if (rows.length > limit) result.continuationToken = page.at(-1)!.name;
    return result;
  }

  // ---------------------------------------------------------------- object service

  dataUrl(kind: 'get' | 'put', objectName: string, expires: number): string {
    const sig = createHmac('sha256', this.#urlKey).update(`${kind}\n${objectName}\n${expires}`).digest('hex');
    return `${this.#o.baseUrl()}/__objects/${kind}/${encodeURIComponent(objectName)}?expires=${expires}&sig=${sig}`;
  }

  checkDataUrl(kind: 'get' | 'put', objectName: string, query: URLSearchParams): void {
    const expires = Number(query.get('expires'));
    const sig = query.get('sig') ?? '';
    const expected = createHmac('sha256', this.#urlKey)
      .update(`${kind}\n${objectName}\n${expires}`)
      .digest('hex');
    if (sig !== expected)
      throw new ApiError(403, 'SignatureDoesNotMatch', 'The data URL signature is not valid');
    if (!(expires > Date.now())) throw new ApiError(403, 'RequestExpired', 'The data URL has expired');
  }

  #object(name: string): ObjectRow | undefined {
    return this.#q('SELECT * FROM objects WHERE name = ?').get(name) as ObjectRow | undefined;
  }

  #lockInUpload(name: string, projectId: string, uploadId: string, expires: number): void {
    const obj = this.#object(name);
    if (!obj) {
      this.#q(
        "INSERT INTO objects (name, project_id, upload_id, expires, hashes, finished) VALUES (?, ?, ?, ?, '{}', 0)",
      ).run(name, projectId, uploadId, expires);
      return;
    }
    if (obj.upload_id !== uploadId || obj.project_id !== projectId) {
      throw conflict(`Object ${name} already exists with another upload`);
    }
    if (expires > obj.expires) this.#q('UPDATE objects SET expires = ? WHERE name = ?').run(expires, name);
  }

  #ensureObject(
    name: string,
    projectId: string,
    uploadId: string,
    expires: number,
    contentType: string,
  ): void {
    if (this.#object(name)) return;
    this.#q(
      "INSERT INTO objects (name, project_id, upload_id, expires, content_type, hashes, finished) VALUES (?, ?, ?, ?, ?, '{}', 0)",
    ).run(name, projectId, uploadId, expires, contentType);
  }

  objectFile(name: string): string {
    return join(this.#o.objectsDir, createHash('sha256').update(name).digest('hex'));
  }

  createUpload(name: string, body: unknown, scopes: readonly string[]): Record<string, unknown> {
    if (!isObject(body)) throw invalidInput('Schema validation failed: body must be an object');
    const { projectId, uploadId } = body;
    if (typeof projectId !== 'string' || projectId.length === 0)
      throw invalidInput('/projectId: is required');
    if (typeof uploadId !== 'string' || uploadId.length === 0) throw invalidInput('/uploadId: is required');
    const expires = parseDate(body.expires, '/expires');
    const hashes = body.hashes ?? {};
    if (!isObject(hashes)) throw invalidInput('/hashes: must be an object');
    const proposed = body.proposedUploadMethods ?? {};
    if (!isObject(proposed)) throw invalidInput('/proposedUploadMethods: must be an object');
    requireScopes(scopes, `object:upload:${projectId}:${name}`);
    return this.#tx(() => {
      const now = Date.now();
      const obj = this.#object(name);
      if (obj) {
        if (obj.finished === 1) throw conflict(`Object ${name} is already finished`);
        if (obj.project_id !== projectId || obj.upload_id !== uploadId || obj.expires !== expires) {
          throw conflict(`Object ${name} exists with a different projectId, uploadId or expires`);
        }
      } else {
        this.#q(
          "INSERT INTO objects (name, project_id, upload_id, expires, hashes, finished) VALUES (?, ?, ?, ?, '{}', 0)",
        ).run(name, projectId, uploadId, expires);
      }
      this.#mergeHashes(name, hashes as Record<string, unknown>);
      let uploadMethod: Record<string, unknown> = {};
      const inline = proposed.dataInline;
      const put = proposed.putUrl;
      if (isObject(inline)) {
        if (typeof inline.objectData !== 'string' || inline.objectData.length > 10926) {
          throw invalidInput('/proposedUploadMethods/dataInline/objectData: base64 of at most 8 KiB');
        }
        const data = Buffer.from(inline.objectData, 'base64');
        const contentType =
          typeof inline.contentType === 'string' ? inline.contentType : 'application/binary';
        this.storeInlineBytes(name, data, contentType);
        uploadMethod = { dataInline: true };
      } else if (isObject(put)) {
        const contentType = typeof put.contentType === 'string' ? put.contentType : 'application/binary';
        const contentLength = typeof put.contentLength === 'number' ? put.contentLength : null;
        this.#q('UPDATE objects SET content_type = ?, content_length = ? WHERE name = ?').run(
          contentType,
          contentLength,
          name,
        );
        const urlExpires = now + 45 * MIN;
        uploadMethod = {
          putUrl: {
            url: this.dataUrl('put', name, urlExpires),
            expires: iso(urlExpires),
            headers: { 'Content-Type': contentType },
          },
        };
      }
      return { projectId, uploadId, expires: iso(expires), uploadMethod };
    });
  }

  #mergeHashes(name: string, given: Record<string, unknown>): void {
    const obj = this.#object(name)!;
    const stored = JSON.parse(obj.hashes) as Record<string, string>;
    for (const [alg, value] of Object.entries(given)) {
      if (typeof value !== 'string') throw invalidInput(`/hashes/${alg}: must be a string`);
      if (stored[alg] !== undefined && stored[alg] !== value) {
        throw conflict(`Object ${name}: hash ${alg} conflicts with the stored value`);
      }
      stored[alg] = value;
    }
    this.#q('UPDATE objects SET hashes = ? WHERE name = ?').run(JSON.stringify(stored), name);
  }

  /**
   * Stores the bytes of an inline upload (at most 8 KiB) in the database, in the caller's transaction: no file,
   * so nothing to create, fsync or rename. Records size and content hashes.
   */
  storeInlineBytes(name: string, data: Buffer, contentType: string | undefined): void {
    const old = this.#object(name)?.file;
    this.#q('UPDATE objects SET data = ?, file = NULL WHERE name = ?').run(data, name);
    this.#recordBytes(
      name,
      null,
      data.length,
      {
        sha256: createHash('sha256').update(data).digest('hex'),
        sha512: createHash('sha512').update(data).digest('hex'),
      },
      contentType,
    );
    // bytes of an earlier PUT of the same object are replaced (the row no longer points at them)
    if (old) rmSync(old, { force: true });
  }

  /** Records uploaded bytes: in `file`, or (file null) already in the row's `data`. */
  #recordBytes(
    name: string,
    file: string | null,
    size: number,
    computed: Record<string, string>,
    contentType: string | undefined,
  ): void {
    const obj = this.#object(name);
    if (!obj) throw notFound(`Object ${name} not found`);
    const stored = JSON.parse(obj.hashes) as Record<string, string>;
    for (const [alg, v] of Object.entries(computed)) {
      if (stored[alg] !== undefined && stored[alg] !== v) {
        throw conflict(`Object ${name}: uploaded data does not match the declared ${alg}`);
      }
    }
    const s3 = obj.upload_id.startsWith('s3-');
    this.#q(
      `UPDATE objects SET file = ?, data = CASE WHEN ? IS NULL THEN data END, size = ?, hashes = ?,
         content_type = COALESCE(?, content_type), finished = CASE WHEN ? THEN 1 ELSE finished END WHERE name = ?`,
    ).run(
      file,
      file,
      size,
      JSON.stringify({ ...stored, ...computed }),
      contentType ?? null,
      s3 ? 1 : 0,
      name,
    );
  }

  /**
   * For the putUrl handler: streams the body to a temporary file (hashing it on the way, no size limit), fsyncs
   * it, then renames it into place and records it in one transaction, so the row and the file always agree.
   */
  async receiveObjectData(
    name: string,
    body: AsyncIterable<Buffer>,
    contentType: string | undefined,
    contentEncoding?: string,
  ): Promise<void> {
    // A gzip-encoded PUT (tcw's uploader compresses text) is stored decoded: the object's hashes are those of its
    // content, and downloads serve it with identity encoding. contentLength counts the bytes on the wire.
    const encoding = contentEncoding?.trim().toLowerCase() || 'identity';
    if (encoding !== 'identity' && encoding !== 'gzip') {
      throw badRequest(`Object ${name}: unsupported Content-Encoding ${contentEncoding}`);
    }
    let wireSize = 0;
    const counted = (async function* () {
      for await (const chunk of body) {
        wireSize += chunk.length;
        yield chunk;
      }
    })();
    const content: AsyncIterable<Buffer> =
      encoding === 'gzip' ? Readable.from(counted).pipe(createGunzip()) : counted;
    const check = () => {
      const obj = this.#object(name);
      if (!obj) throw notFound(`Object ${name} not found`);
      if (obj.finished === 1 && !obj.upload_id.startsWith('s3-')) {
        throw conflict(`Object ${name} is already finished`);
      }
      return obj;
    };
    check();
    const file = this.objectFile(name);
    const tmp = `${file}.${process.pid}.${slugid()}.tmp`;
    const sha256 = createHash('sha256');
    const sha512 = createHash('sha512');
    let size = 0;
    const fh = await open(tmp, 'w', 0o600);
    try {
      try {
        for await (const chunk of content) {
          await fh.write(chunk);
          sha256.update(chunk);
          sha512.update(chunk);
          size += chunk.length;
        }
        if (this.#o.fsyncObjects) await fh.sync();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code?.startsWith('Z_')) {
          throw badRequest(`Object ${name}: the body is not valid gzip data (${(err as Error).message})`);
        }
        throw err;
      } finally {
        await fh.close();
      }
      this.#tx(() => {
        const obj = check();
        if (obj.content_length !== null && wireSize !== obj.content_length) {
          throw badRequest(
            `Object ${name}: got ${wireSize} bytes, expected contentLength ${obj.content_length}`,
          );
        }
        renameSync(tmp, file);
        this.#syncObjectsDir();
        this.#recordBytes(
          name,
          file,
          size,
          { sha256: sha256.digest('hex'), sha512: sha512.digest('hex') },
          contentType ?? obj.content_type ?? undefined,
        );
      });
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  #syncObjectsDir(): void {
    if (!this.#o.fsyncObjects) return;
    if (this.#walFd !== undefined) {
      this.#dirUnsynced = true;
      return;
    }
    const fd = openSync(this.#o.objectsDir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  finishUpload(name: string, body: unknown, scopes: readonly string[]): Record<string, unknown> {
    if (!isObject(body)) throw invalidInput('Schema validation failed: body must be an object');
    const { projectId, uploadId } = body;
    if (typeof projectId !== 'string') throw invalidInput('/projectId: is required');
    if (typeof uploadId !== 'string') throw invalidInput('/uploadId: is required');
    requireScopes(scopes, `object:upload:${projectId}:${name}`);
    this.#tx(() => {
      const obj = this.#object(name);
      if (!obj) throw notFound(`Object ${name} not found`);
      if (obj.project_id !== projectId) throw badRequest(`Object ${name} belongs to another projectId`);
      if (obj.upload_id !== uploadId) throw conflict(`Object ${name} has another uploadId`);
      if (body.hashes !== undefined) {
        if (!isObject(body.hashes)) throw invalidInput('/hashes: must be an object');
        this.#mergeHashes(name, body.hashes);
      }
      if (obj.finished === 1) return;
      if (obj.file === null && obj.data === null) throw badRequest(`Object ${name}: no data was uploaded`);
      this.#q('UPDATE objects SET finished = 1 WHERE name = ?').run(name);
    });
    return {};
  }

  startDownload(name: string, body: unknown, scopes: readonly string[]): Record<string, unknown> {
    requireScopes(scopes, `object:download:${name}`);
    const accept =
      isObject(body) && isObject(body.acceptDownloadMethods) ? body.acceptDownloadMethods : undefined;
    if (!accept) throw invalidInput('/acceptDownloadMethods: is required');
    const obj = this.#object(name);
    if (obj?.finished !== 1) throw notFound(`Object ${name} not found`);
    const expires = Date.now() + 3600_000;
    if (accept.getUrl === true) {
      return {
        method: 'getUrl',
        url: this.dataUrl('get', name, expires),
        expires: iso(expires),
        hashes: this.#hashes(obj),
      };
    }
    if (accept.simple === true) return { method: 'simple', url: this.dataUrl('get', name, expires) };
    throw new ApiError(406, 'NoMatchingMethod', 'None of the accepted download methods is supported');
  }

  #hashes(obj: ObjectRow): Record<string, string> {
    return JSON.parse(obj.hashes);
  }

  objectMetadata(name: string, scopes: readonly string[]): Record<string, unknown> {
    requireScopes(scopes, `object:download:${name}`);
    const obj = this.#object(name);
    if (obj?.finished !== 1) throw notFound(`Object ${name} not found`);
    return { projectId: obj.project_id, expires: iso(obj.expires), hashes: this.#hashes(obj) };
  }

  /** For the data GET handler: the object's file, or its bytes when it was uploaded inline. */
  objectForDownload(name: string): { file?: string; data?: Buffer; contentType: string; size: number } {
    const obj = this.#object(name);
    if (
      !obj ||
      (obj.file === null && obj.data === null) ||
      (obj.finished !== 1 && !obj.upload_id.startsWith('s3-'))
    ) {
      throw notFound(`Object ${name} not found`);
    }
    const contentType = obj.content_type ?? 'application/binary';
    if (obj.file === null) return { data: Buffer.from(obj.data!), contentType, size: obj.data!.length };
    return { file: obj.file, contentType, size: obj.size ?? 0 };
  }

  // ---------------------------------------------------------------- worker-manager (static provider)

  upsertStaticWorker(w: {
    workerPoolId: string;
    workerGroup: string;
    workerId: string;
    staticSecret: string;
    providerId?: string;
    workerConfig?: Record<string, unknown>;
  }): void {
    this.#tx(() => {
      this.#q(
        `INSERT INTO workers (worker_pool_id, worker_group, worker_id, provider_id, static_secret, secret, expires, state, worker_config)
           VALUES (?, ?, ?, ?, ?, NULL, NULL, 'requested', ?)
           ON CONFLICT (worker_pool_id, worker_group, worker_id) DO UPDATE SET
             provider_id = excluded.provider_id, static_secret = excluded.static_secret, worker_config = excluded.worker_config`,
      ).run(
        w.workerPoolId,
        w.workerGroup,
        w.workerId,
        w.providerId ?? 'static',
        w.staticSecret,
        JSON.stringify(w.workerConfig ?? {}),
      );
    });
  }

  #workerCredentials(providerId: string, wp: string, wg: string, wid: string, expires: number) {
    const tail = `${wp}/${wg}/${wid}`;
    return createTemporaryCredentials({
      clientId: `worker/${providerId}/${tail}`,
      start: new Date(Date.now() - 15 * MIN),
      expiry: new Date(expires),
      scopes: [
        `assume:worker-pool:${wp}`,
        `assume:worker-type:${wp}`,
        `assume:worker-id:${wg}/${wid}`,
        `queue:worker-id:${wg}/${wid}`,
        `queue:claim-work:${wp}`,
        `secrets:get:worker-pool:${wp}`,
        `secrets:get:worker-type:${wp}`,
        `worker-manager:remove-worker:${tail}`,
        `worker-manager:reregister-worker:${tail}`,
        `worker-manager:should-worker-terminate:${tail}`,
      ],
      credentials: this.#o.root,
    });
  }

  #worker(wp: string, wg: string, wid: string) {
    return this.#q(
      'SELECT * FROM workers WHERE worker_pool_id = ? AND worker_group = ? AND worker_id = ?',
    ).get(wp, wg, wid) as
      | {
          provider_id: string;
          static_secret: string;
          secret: string | null;
          expires: number | null;
          state: string;
          worker_config: string;
        }
      | undefined;
  }

  registerWorker(body: unknown): Record<string, unknown> {
    if (!isObject(body)) throw invalidInput('Schema validation failed: body must be an object');
    const { workerPoolId, providerId, workerGroup, workerId, workerIdentityProof } = body;
    for (const [k, v] of Object.entries({ workerPoolId, providerId, workerGroup, workerId })) {
      if (typeof v !== 'string' || v.length === 0) throw invalidInput(`/${k}: is required`);
    }
    if (!isObject(workerIdentityProof)) throw invalidInput('/workerIdentityProof: is required');
    return this.#tx(() => {
      const w = this.#worker(workerPoolId as string, workerGroup as string, workerId as string);
      if (!w) throw notFound(`Worker ${workerPoolId}/${workerGroup}/${workerId} not found`);
      if (w.provider_id !== providerId) throw badRequest(`Worker is not managed by provider ${providerId}`);
      if (workerIdentityProof.staticSecret !== w.static_secret) throw badRequest('Bad static worker secret');
      if (w.state === 'stopped') throw badRequest('Worker was removed');
      return this.#issueWorker(workerPoolId as string, workerGroup as string, workerId as string, w, true);
    });
  }

  #issueWorker(
    wp: string,
    wg: string,
    wid: string,
    w: { provider_id: string; worker_config: string },
    withConfig: boolean,
  ): Record<string, unknown> {
    const expires = Date.now() + this.#o.reregistrationTimeoutMs;
    const secret = slugid() + slugid();
    this.#q(
      "UPDATE workers SET secret = ?, expires = ?, state = 'running' WHERE worker_pool_id = ? AND worker_group = ? AND worker_id = ?",
    ).run(secret, expires, wp, wg, wid);
    const result: Record<string, unknown> = {
      expires: iso(expires),
      credentials: this.#workerCredentials(w.provider_id, wp, wg, wid, expires),
      secret,
    };
    if (withConfig) result.workerConfig = JSON.parse(w.worker_config);
    return result;
  }

  reregisterWorker(body: unknown, scopes: readonly string[]): Record<string, unknown> {
    if (!isObject(body)) throw invalidInput('Schema validation failed: body must be an object');
    const { workerPoolId, workerGroup, workerId, secret } = body;
    for (const [k, v] of Object.entries({ workerPoolId, workerGroup, workerId, secret })) {
      if (typeof v !== 'string' || v.length === 0) throw invalidInput(`/${k}: is required`);
    }
    requireScopes(scopes, `worker-manager:reregister-worker:${workerPoolId}/${workerGroup}/${workerId}`);
    return this.#tx(() => {
      const w = this.#worker(workerPoolId as string, workerGroup as string, workerId as string);
      if (!w) throw notFound(`Worker ${workerPoolId}/${workerGroup}/${workerId} not found`);
      if (w.secret === null || w.secret !== secret) throw badRequest('Bad worker secret');
      if (w.state !== 'running') throw badRequest('Worker is not running');
      if (w.expires !== null && w.expires < Date.now()) throw badRequest('Worker has expired');
      return this.#issueWorker(workerPoolId as string, workerGroup as string, workerId as string, w, false);
    });
  }

  removeWorker(wp: string, wg: string, wid: string, scopes: readonly string[]): Record<string, unknown> {
    requireScopes(scopes, `worker-manager:remove-worker:${wp}/${wg}/${wid}`);
    return this.#tx(() => {
      const w = this.#worker(wp, wg, wid);
      if (!w) throw notFound(`Worker ${wp}/${wg}/${wid} not found`);
      this.#q(
        "UPDATE workers SET state = 'stopped', secret = NULL WHERE worker_pool_id = ? AND worker_group = ? AND worker_id = ?",
      ).run(wp, wg, wid);
      const now = Date.now();
      const rows = this.#q(
        'SELECT task_id FROM tasks WHERE taken_until IS NOT NULL AND task_queue_id = ?',
      ).all(wp) as Array<{ task_id: string }>;
      for (const { task_id } of rows) {
        const rec = this.#load(task_id)!;
        const run = rec.runs.at(-1);
        if (run?.state === 'running' && run.workerGroup === wg && run.workerId === wid) {
          this.#resolveRun(rec, run, 'exception', 'worker-shutdown', now);
        }
      }
      return {};
    });
  }

  // ---------------------------------------------------------------- secrets

  setSecret(name: string, value: unknown, expires: number): void {
    this.#tx(() => {
      this.#q('INSERT OR REPLACE INTO secrets (name, secret, expires) VALUES (?, ?, ?)').run(
        name,
        JSON.stringify(value),
        expires,
      );
    });
  }

  getSecret(name: string, scopes: readonly string[]): Record<string, unknown> {
    requireScopes(scopes, `secrets:get:${name}`);
    const row = this.#q('SELECT secret, expires FROM secrets WHERE name = ?').get(name) as
      | { secret: string; expires: number }
      | undefined;
    if (!row || row.expires < Date.now()) throw notFound(`Secret ${name} not found`);
    return { secret: JSON.parse(row.secret), expires: iso(row.expires) };
  }

  putSecret(name: string, body: unknown, scopes: readonly string[]): Record<string, unknown> {
    requireScopes(scopes, `secrets:set:${name}`);
    if (!isObject(body) || !isObject(body.secret)) throw invalidInput('/secret: must be an object');
    this.setSecret(name, body.secret, parseDate(body.expires, '/expires'));
    return {};
  }

  removeSecret(name: string, scopes: readonly string[]): Record<string, unknown> {
    requireScopes(scopes, `secrets:set:${name}`);
    const r = this.#tx(() => this.#q('DELETE FROM secrets WHERE name = ?').run(name));
    if (Number(r.changes) === 0) throw notFound(`Secret ${name} not found`);
    return {};
  }
}

function stripUpload(details: Record<string, unknown>): Record<string, unknown> {
  const { uploadId: _u, objectName: _o, projectId: _p, ...rest } = details;
  return rest;
}

const fdatasync = promisify(fdatasyncCb);
const fsyncFd = promisify(fsyncCb);

/** fsync of a file or folder by path (the thread pool does the waiting). */
async function syncPath(path: string): Promise<void> {
  const fd = openSync(path, 'r');
  try {
    await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
