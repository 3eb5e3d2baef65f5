import { randomBytes, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import {
  type Claim,
  type CreateArtifactRequest,
  type CreateUploadResponse,
  type Credentials,
  type ObjectArtifactResponse,
  type QueuePort,
  type ReclaimResult,
  RunGoneError,
  type RunStatus,
  type TaskDefinition,
  type TaskStatus,
  type UploadMethodProposal,
} from '@tcw/core';

/** An error shaped like taskcluster-client's (`statusCode`, `code`). */
export class FakeHttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface FakeQueueOptions {
  /** claimWork waits this long for a pending task before answering `[]` (default 50 ms). */
  longPollMs?: number;
  /** takenUntil = now + this (default 20 min). */
  claimTimeoutMs?: number;
  /** Task queue of tasks created without one (default `tcw-test/fake`). */
  taskQueueId?: string;
}

export interface FakeArtifact {
  name: string;
  storageType: 'object' | 'reference' | 'link' | 'error';
  expires: string;
  contentType?: string;
  url?: string;
  artifact?: string;
  reason?: string;
  message?: string;
  /** Object artifacts: the original bytes (gzip transfer encoding undone), once finished. */
  data?: Buffer;
  contentEncoding?: string;
  hashes?: Record<string, string>;
  present: boolean;
}

interface FakeRun extends RunStatus {
  credentials?: Credentials;
  artifacts: Map<string, FakeArtifact>;
}

interface FakeTask {
  taskId: string;
  task: TaskDefinition;
  runs: FakeRun[];
  seq: number;
}

interface StoredObject {
  name: string;
  uploadId: string;
  projectId: string;
  expires: string;
  data?: Buffer;
  encoding?: string;
  contentType?: string;
  hashes?: Record<string, string>;
  finished: boolean;
}

/** A call the worker made, for assertions (`claimWork` with its `tasks`, `reclaimTask`, …). */
export interface FakeCall {
  method: string;
  taskId?: string;
  runId?: number;
  args: unknown[];
  credentials?: Credentials;
  at: number;
}

type FaultMethod = keyof QueuePort | 'put';

/**
 * An in-memory `QueuePort` with the queue's run state machine (pending → running → completed/failed/exception,
 * 409 as `RunGoneError` once a run is over) and a small object store whose data PUTs go over real local HTTP.
 * For unit tests of engines, plugins and the worker loop; integration tests use @tcw/local-queue instead.
 */
export class FakeQueue implements QueuePort {
  readonly rootUrl = 'http://fake-queue.invalid';
  readonly calls: FakeCall[] = [];
  readonly events = new EventEmitter<{ resolved: [{ taskId: string; runId: number; state: string }] }>();
  readonly #o: Required<FakeQueueOptions>;
  readonly #tasks = new Map<string, FakeTask>();
  readonly #objects = new Map<string, StoredObject>();
  readonly #faults = new Map<FaultMethod, Array<Error | number>>();
  #seq = 0;
  #waiters = new Set<() => void>();
  #server: Server | undefined;
  #serverUrl: Promise<string> | undefined;

  constructor(options: FakeQueueOptions = {}) {
    this.#o = {
      longPollMs: options.longPollMs ?? 50,
      claimTimeoutMs: options.claimTimeoutMs ?? 20 * 60_000,
      taskQueueId: options.taskQueueId ?? 'tcw-test/fake',
    };
  }

  // ---------------------------------------------------------------- test controls

  /** Adds a pending task; returns its taskId. */
  createTask(
    payload: Record<string, unknown>,
    overrides: Partial<TaskDefinition> & { taskId?: string } = {},
  ): string {
    const { taskId = randomUUID(), ...rest } = overrides;
    const now = Date.now();
    const taskQueueId = rest.taskQueueId ?? this.#o.taskQueueId;
    const [provisionerId, workerType] = taskQueueId.split('/') as [string, string];
    const task: TaskDefinition = {
      taskQueueId,
      provisionerId,
      workerType,
      schedulerId: '-',
      projectId: 'none',
      taskGroupId: taskId,
      dependencies: [],
      requires: 'all-completed',
      routes: [],
      priority: 'lowest',
      retries: 5,
      created: new Date(now).toJSON(),
      deadline: new Date(now + 3600_000).toJSON(),
      expires: new Date(now + 24 * 3600_000).toJSON(),
      scopes: [],
      payload,
      metadata: {
        name: 'fake task',
        description: '',
        owner: 'tcw@example.com',
        source: 'https://example.com/tcw',
      },
      tags: {},
      extra: {},
      ...rest,
    };
    this.#tasks.set(taskId, {
      taskId,
      task,
      runs: [this.#newRun(0, 'scheduled')],
      seq: this.#seq++,
    });
    this.#wake();
    return taskId;
  }

  #newRun(runId: number, reasonCreated: string): FakeRun {
    return { runId, state: 'pending', reasonCreated, scheduled: new Date().toJSON(), artifacts: new Map() };
  }

  /** Cancels a task like `queue.cancelTask`: its pending or running run becomes exception/canceled. */
  cancelTask(taskId: string): void {
    const run = this.#latest(taskId);
    if (run.state === 'pending' || run.state === 'running')
      this.#resolve(taskId, run, 'exception', 'canceled');
  }

  /** Resolves a running run as the claim resolver would (`claim-expired`). */
  expireClaim(taskId: string): void {
    const run = this.#latest(taskId);
    if (run.state === 'running') this.#resolve(taskId, run, 'exception', 'claim-expired');
  }

  /** The next `times` calls of `method` fail: with the given error, or an HTTP-like error of that status. */
  failNext(method: FaultMethod, failure: Error | number, times = 1): void {
    const list = this.#faults.get(method) ?? [];
    for (let i = 0; i < times; i++) list.push(failure);
    this.#faults.set(method, list);
  }

  #fault(method: FaultMethod): void {
    const list = this.#faults.get(method);
    const next = list?.shift();
    if (next === undefined) return;
    if (typeof next === 'number') {
      if (next === 409) throw new RunGoneError(`${method}: 409 (injected)`);
      throw new FakeHttpError(
        next,
        next >= 500 ? 'InternalServerError' : 'InjectedError',
        `${method}: ${next} (injected)`,
      );
    }
    throw next;
  }

  /** The task's status as the queue reports it. */
  statusOf(taskId: string): TaskStatus {
    const t = this.#task(taskId);
    const last = t.runs[t.runs.length - 1];
    return {
      taskId,
      taskQueueId: t.task.taskQueueId,
      state: last ? last.state : 'unscheduled',
      deadline: t.task.deadline,
      expires: t.task.expires,
      retriesLeft: t.task.retries,
      runs: t.runs.map(({ credentials: _c, artifacts: _a, ...run }) => ({ ...run })),
    };
  }

  /** Every artifact of a run, by name. */
  artifacts(taskId: string, runId = 0): Map<string, FakeArtifact> {
    return this.#task(taskId).runs[runId]?.artifacts ?? new Map();
  }

  /** The bytes of an object artifact (following links). */
  artifactData(taskId: string, name: string, runId = 0): Buffer {
    let artifact = this.artifacts(taskId, runId).get(name);
    for (let hops = 0; artifact?.storageType === 'link' && hops < 10; hops++) {
      artifact = this.artifacts(taskId, runId).get(artifact.artifact!);
    }
    if (!artifact?.data) throw new Error(`no object artifact ${name} on ${taskId}/${runId}`);
    return artifact.data;
  }

  /** Resolves when the run reaches a terminal state. */
  waitForResolution(taskId: string, runId = 0): Promise<RunStatus> {
    const check = () => {
      const run = this.#task(taskId).runs[runId];
      return run && run.state !== 'pending' && run.state !== 'running'
        ? this.statusOf(taskId).runs[runId]
        : undefined;
    };
    const now = check();
    if (now) return Promise.resolve(now);
    return new Promise((resolve) => {
      const listener = (e: { taskId: string; runId: number }) => {
        if (e.taskId !== taskId || e.runId !== runId) return;
        const done = check();
        if (done) {
          this.events.off('resolved', listener);
          resolve(done);
        }
      };
      this.events.on('resolved', listener);
    });
  }

  /** Stops the object store's HTTP server. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // ---------------------------------------------------------------- helpers

  #task(taskId: string): FakeTask {
    const t = this.#tasks.get(taskId);
    if (!t) throw new FakeHttpError(404, 'ResourceNotFound', `task ${taskId} not found`);
    return t;
  }

  #latest(taskId: string): FakeRun {
    const t = this.#task(taskId);
    const run = t.runs[t.runs.length - 1];
    if (!run) throw new FakeHttpError(404, 'ResourceNotFound', `task ${taskId} has no runs`);
    return run;
  }

  #run(taskId: string, runId: number): FakeRun {
    const t = this.#task(taskId);
    const run = t.runs[runId];
    if (!run) throw new FakeHttpError(404, 'ResourceNotFound', `run ${taskId}/${runId} not found`);
    return run;
  }

  #record(method: string, args: unknown[], extra: Partial<FakeCall> = {}): void {
    this.calls.push({ method, args, at: Date.now(), ...extra });
  }

  #resolve(taskId: string, run: FakeRun, state: 'completed' | 'failed' | 'exception', reason: string): void {
    run.state = state;
    run.reasonResolved = reason;
    run.resolved = new Date().toJSON();
    delete run.takenUntil;
    const t = this.#task(taskId);
    if (
      state === 'exception' &&
      (reason === 'worker-shutdown' || reason === 'claim-expired' || reason === 'intermittent-task') &&
      t.task.retries > 0
    ) {
      t.task.retries--;
      t.runs.push(this.#newRun(t.runs.length, reason === 'intermittent-task' ? 'task-retry' : 'retry'));
      this.#wake();
    }
    this.events.emit('resolved', { taskId, runId: run.runId, state });
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = new Set();
    for (const w of waiters) w();
  }

  #credentialsFor(taskId: string, runId: number, takenUntil: Date): Credentials {
    return {
      clientId: `task-client/${taskId}/${runId}/until/${Math.floor(takenUntil.getTime() / 1000)}`,
      accessToken: randomBytes(16).toString('base64url'),
    };
  }

  #requireRunning(taskId: string, runId: number, what: string): FakeRun {
    const t = this.#task(taskId);
    const run = this.#run(taskId, runId);
    if (run.runId !== t.runs.length - 1 || run.state !== 'running') {
      throw new RunGoneError(`${what}: run ${taskId}/${runId} is ${run.state} (${run.reasonResolved ?? ''})`);
    }
    return run;
  }

  // ---------------------------------------------------------------- QueuePort

  async claimWork(
    taskQueueId: string,
    request: { workerGroup: string; workerId: string; tasks: number },
  ): Promise<Claim[]> {
    this.#record('claimWork', [taskQueueId, request]);
    this.#fault('claimWork');
    const take = (): Claim[] => {
      const pending = [...this.#tasks.values()]
        .filter((t) => t.task.taskQueueId === taskQueueId && t.runs[t.runs.length - 1]?.state === 'pending')
        .sort((a, b) => a.seq - b.seq)
        .slice(0, request.tasks);
      return pending.map((t) => {
        const run = t.runs[t.runs.length - 1]!;
        const takenUntil = new Date(Date.now() + this.#o.claimTimeoutMs);
        run.state = 'running';
        run.workerGroup = request.workerGroup;
        run.workerId = request.workerId;
        run.started = new Date().toJSON();
        run.takenUntil = takenUntil.toJSON();
        run.credentials = this.#credentialsFor(t.taskId, run.runId, takenUntil);
        return {
          taskId: t.taskId,
          runId: run.runId,
          task: structuredClone(t.task),
          takenUntil,
          credentials: run.credentials,
          workerGroup: request.workerGroup,
          workerId: request.workerId,
        };
      });
    };
    let claims = take();
    if (claims.length > 0) return claims;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.#o.longPollMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#waiters.add(done);
    });
    claims = take();
    return claims;
  }

  async reclaimTask(taskId: string, runId: number, credentials: Credentials): Promise<ReclaimResult> {
    this.#record('reclaimTask', [taskId, runId], { taskId, runId, credentials });
    this.#fault('reclaimTask');
    const run = this.#requireRunning(taskId, runId, 'reclaimTask');
    const takenUntil = new Date(Date.now() + this.#o.claimTimeoutMs);
    run.takenUntil = takenUntil.toJSON();
    run.credentials = this.#credentialsFor(taskId, runId, takenUntil);
    return { takenUntil, credentials: run.credentials };
  }

  async #report(
    method: string,
    taskId: string,
    runId: number,
    state: 'completed' | 'failed' | 'exception',
    reason: string,
    credentials: Credentials,
  ) {
    this.#record(method, [taskId, runId, reason], { taskId, runId, credentials });
    this.#fault(method as FaultMethod);
    const run = this.#run(taskId, runId);
    if (run.state === state && run.reasonResolved === reason) return;
    this.#requireRunning(taskId, runId, method);
    this.#resolve(taskId, run, state, reason);
  }

  reportCompleted(taskId: string, runId: number, credentials: Credentials): Promise<void> {
    return this.#report('reportCompleted', taskId, runId, 'completed', 'completed', credentials);
  }

  reportFailed(taskId: string, runId: number, credentials: Credentials): Promise<void> {
    return this.#report('reportFailed', taskId, runId, 'failed', 'failed', credentials);
  }

  reportException(taskId: string, runId: number, reason: string, credentials: Credentials): Promise<void> {
    return this.#report('reportException', taskId, runId, 'exception', reason, credentials);
  }

  async status(taskId: string): Promise<TaskStatus> {
    this.#record('status', [taskId], { taskId });
    this.#fault('status');
    return this.statusOf(taskId);
  }

  async createArtifact(
    taskId: string,
    runId: number,
    name: string,
    request: CreateArtifactRequest,
    credentials: Credentials,
  ): Promise<{ storageType: string } | ObjectArtifactResponse> {
    this.#record('createArtifact', [taskId, runId, name, request], { taskId, runId, credentials });
    this.#fault('createArtifact');
    const run = this.#run(taskId, runId);
    const recentException =
      run.state === 'exception' && run.resolved && Date.now() - Date.parse(run.resolved) < 25 * 60_000;
    if (run.state !== 'running' && !recentException) {
      throw new RunGoneError(`createArtifact: run ${taskId}/${runId} is ${run.state}`);
    }
    const task = this.#task(taskId).task;
    if (Date.parse(request.expires) > Date.parse(task.expires)) {
      throw new FakeHttpError(400, 'InputError', `artifact ${name} expires after the task`);
    }
    const existing = run.artifacts.get(name);
    if (
      existing &&
      existing.storageType !== request.storageType &&
      !(existing.storageType === 'reference' && request.storageType === 'link')
    ) {
      throw new RunGoneError(`createArtifact: ${name} exists with another storage type`);
    }
    const artifact: FakeArtifact = {
      name,
      storageType: request.storageType,
      expires: request.expires,
      present: request.storageType !== 'object',
    };
    if ('contentType' in request && request.contentType) artifact.contentType = request.contentType;
    if (request.storageType === 'reference') artifact.url = request.url;
    if (request.storageType === 'link') artifact.artifact = request.artifact;
    if (request.storageType === 'error') {
      artifact.reason = request.reason;
      artifact.message = request.message;
    }
    run.artifacts.set(name, artifact);
    if (request.storageType !== 'object') return { storageType: request.storageType };
    const objectName = `t/${taskId}/${runId}/${name}`;
    const uploadId = randomUUID();
    this.#objects.set(objectName, {
      name: objectName,
      uploadId,
      projectId: task.projectId,
      expires: request.expires,
      finished: false,
    });
    return {
      storageType: 'object',
      name: objectName,
      projectId: task.projectId,
      uploadId,
      expires: request.expires,
      credentials: { clientId: `object-upload/${uploadId}`, accessToken: randomBytes(8).toString('hex') },
    };
  }

  async finishArtifact(
    taskId: string,
    runId: number,
    name: string,
    uploadId: string,
    credentials: Credentials,
  ): Promise<void> {
    this.#record('finishArtifact', [taskId, runId, name, uploadId], { taskId, runId, credentials });
    this.#fault('finishArtifact');
    const artifact = this.#run(taskId, runId).artifacts.get(name);
    const object = this.#objects.get(`t/${taskId}/${runId}/${name}`);
    if (!artifact || !object) throw new FakeHttpError(404, 'ResourceNotFound', `no artifact ${name}`);
    if (object.uploadId !== uploadId || !object.finished) {
      throw new FakeHttpError(400, 'InputError', `object for ${name} is not finished`);
    }
    const raw = object.data ?? Buffer.alloc(0);
    artifact.data = object.encoding === 'gzip' ? gunzipSync(raw) : raw;
    artifact.contentEncoding = object.encoding ?? 'identity';
    if (object.hashes) artifact.hashes = object.hashes;
    artifact.present = true;
  }

  async createUpload(
    name: string,
    request: {
      projectId: string;
      uploadId: string;
      expires: string;
      proposedUploadMethods: UploadMethodProposal;
    },
    _credentials: Credentials,
  ): Promise<CreateUploadResponse> {
    this.#record('createUpload', [name, request]);
    this.#fault('createUpload');
    const object = this.#objects.get(name);
    if (!object || object.uploadId !== request.uploadId)
      throw new FakeHttpError(409, 'RequestConflict', `upload ${name} conflict`);
    const { dataInline, putUrl } = request.proposedUploadMethods;
    const base = { projectId: request.projectId, uploadId: request.uploadId, expires: request.expires };
    if (dataInline) {
      object.data = Buffer.from(dataInline.objectData, 'base64');
      object.contentType = dataInline.contentType;
      object.encoding = 'identity';
      return { ...base, uploadMethod: { dataInline: true } };
    }
    if (putUrl) {
      const url = `${await this.#objectServer()}/objects/${encodeURIComponent(name)}`;
      return {
        ...base,
        uploadMethod: {
          putUrl: {
            url,
            expires: new Date(Date.now() + 3600_000).toJSON(),
            headers: { 'Content-Type': putUrl.contentType },
          },
        },
      };
    }
    return { ...base, uploadMethod: {} };
  }

  async finishUpload(
    name: string,
    request: { projectId: string; uploadId: string; hashes: Record<string, string> },
    _credentials: Credentials,
  ): Promise<void> {
    this.#record('finishUpload', [name, request]);
    this.#fault('finishUpload');
    const object = this.#objects.get(name);
    if (!object) throw new FakeHttpError(404, 'ResourceNotFound', `no object ${name}`);
    object.hashes = request.hashes;
    object.finished = true;
  }

  #objectServer(): Promise<string> {
    this.#serverUrl ??= new Promise((resolve) => {
      const server = createServer((req, res) => {
        const match = /^\/objects\/(.+)$/.exec(req.url ?? '');
        const object = match ? this.#objects.get(decodeURIComponent(match[1]!)) : undefined;
        if (req.method !== 'PUT' || !object) {
          res.writeHead(404).end();
          return;
        }
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          try {
            this.#fault('put');
          } catch (error) {
            res.writeHead((error as FakeHttpError).statusCode ?? 500).end();
            return;
          }
          object.data = Buffer.concat(chunks);
          object.encoding = String(req.headers['content-encoding'] ?? 'identity');
          object.contentType = String(req.headers['content-type'] ?? '');
          res.writeHead(200).end();
        });
      });
      server.listen(0, '127.0.0.1', () => {
        this.#server = server;
        server.unref();
        resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
      });
    });
    return this.#serverUrl;
  }
}

export function createFakeQueue(options?: FakeQueueOptions): FakeQueue {
  return new FakeQueue(options);
}
