import http from 'node:http';
import https from 'node:https';
import taskcluster from 'taskcluster-client';
import { RunGoneError } from '../errors/run-gone-error.js';
import type { Claim, Credentials, TaskDefinition, TaskStatus } from '../task.js';
import type {
  CreateArtifactRequest,
  CreateUploadResponse,
  ObjectArtifactResponse,
  QueuePort,
  ReclaimResult,
  UploadMethodProposal,
} from './queue-port.js';

export interface TaskclusterQueueOptions {
  rootUrl: string;
  /** The worker's own credentials (claimWork, status). Task calls use the run's credentials. */
  credentials: Credentials;
  /** Per-attempt HTTP timeout; must stay above the 20 s claimWork long-poll. Default 60 s. */
  timeoutMs?: number;
  /** Retries of 5xx and network errors made by taskcluster-client (default 5, so 6 attempts). */
  retries?: number;
  /**
   * Builds the API clients instead of taskcluster-client, e.g. the embedded local queue's in-process clients
   * (`LocalQueue.client`): same method names, arguments, answers and error shapes (`statusCode`), no HTTP.
   */
  clientFactory?: (kind: 'Queue' | 'Object', credentials: Credentials) => object;
}

interface ClientError extends Error {
  statusCode?: number;
  code?: string;
}

function rethrow(error: unknown, what: string): never {
  const err = error as ClientError;
  if (err && err.statusCode === 409) {
    throw new RunGoneError(`${what}: ${err.message}`, { cause: error });
  }
  throw error;
}

function toCredentials(raw: { clientId: string; accessToken: string; certificate?: unknown }): Credentials {
  const creds: Credentials = { clientId: raw.clientId, accessToken: raw.accessToken };
  if (raw.certificate !== undefined && raw.certificate !== null && raw.certificate !== '') {
    creds.certificate =
      typeof raw.certificate === 'string' ? raw.certificate : JSON.stringify(raw.certificate);
  }
  return creds;
}

/** How many taskcluster-client instances (one per kind and credentials) are kept for reuse. */
const CLIENT_CACHE_SIZE = 64;

type ClientKind = 'Queue' | 'Object';
// biome-ignore lint/suspicious/noExplicitAny: taskcluster-client's generated clients are untyped
type Client = any;

/** The QueuePort over `taskcluster-client@87.1.3`: a real deployment, or the embedded local queue. */
export class TaskclusterQueue implements QueuePort {
  readonly rootUrl: string;
  #credentials: Credentials;
  readonly #timeout: number;
  readonly #retries: number;
  readonly #factory: TaskclusterQueueOptions['clientFactory'];
  /** Built clients by kind and credentials, least recently used first. */
  readonly #clients = new Map<string, Client>();
  /**
   * One keep-alive agent pair shared by every client of this queue, so consecutive calls (and tasks) reuse
   * connections instead of opening one per call. Idle keep-alive sockets are unref'd by node, so they do not keep
   * the process alive; node also honours the server's `Keep-Alive: timeout` hint before reusing one.
   */
  readonly #agents = {
    http: new http.Agent({ keepAlive: true, maxSockets: 50, maxFreeSockets: 16 }),
    https: new https.Agent({ keepAlive: true, maxSockets: 50, maxFreeSockets: 16 }),
  };

  constructor(options: TaskclusterQueueOptions) {
    this.rootUrl = options.rootUrl.replace(/\/+$/, '');
    this.#credentials = options.credentials;
    this.#timeout = options.timeoutMs ?? 60_000;
    this.#retries = options.retries ?? 5;
    this.#factory = options.clientFactory;
  }

  /** Replace the worker's own credentials (new-credentials from worker-runner, re-registration). */
  setCredentials(credentials: Credentials): void {
    this.#credentials = credentials;
  }

  #client(kind: ClientKind, credentials: Credentials): Client {
    const key = `${kind}\n${credentials.clientId}\n${credentials.accessToken}\n${credentials.certificate ?? ''}`;
    let client = this.#clients.get(key);
    if (client) {
      this.#clients.delete(key);
    } else {
      if (this.#factory) {
        client = this.#factory(kind, credentials);
      } else {
        client = new taskcluster[kind]({
          rootUrl: this.rootUrl,
          credentials,
          timeout: this.#timeout,
          retries: this.#retries,
        });
        // taskcluster-client@87 reads its agents from `_httpAgent` on every request; its `agent` option would
        // build a new agent pair per client (so per task credentials), which defeats the reuse.
        client._httpAgent = this.#agents;
      }
      if (this.#clients.size >= CLIENT_CACHE_SIZE) {
        const oldest = this.#clients.keys().next().value;
        if (oldest !== undefined) this.#clients.delete(oldest);
      }
    }
    this.#clients.set(key, client);
    return client;
  }

  /** Closes the idle keep-alive connections (they never keep the process alive; this just frees them early). */
  close(): void {
    this.#agents.http.destroy();
    this.#agents.https.destroy();
    this.#clients.clear();
  }

  async claimWork(
    taskQueueId: string,
    request: { workerGroup: string; workerId: string; tasks: number },
  ): Promise<Claim[]> {
    const res = await this.#client('Queue', this.#credentials).claimWork(taskQueueId, request);
    return (res.tasks as Array<Record<string, unknown>>).map((c) => ({
      taskId: (c.status as { taskId: string }).taskId,
      runId: c.runId as number,
      task: c.task as TaskDefinition,
      takenUntil: new Date(c.takenUntil as string),
      credentials: toCredentials(c.credentials as Credentials),
      workerGroup: c.workerGroup as string,
      workerId: c.workerId as string,
    }));
  }

  async reclaimTask(taskId: string, runId: number, credentials: Credentials): Promise<ReclaimResult> {
    try {
      const res = await this.#client('Queue', credentials).reclaimTask(taskId, String(runId));
      return { takenUntil: new Date(res.takenUntil), credentials: toCredentials(res.credentials) };
    } catch (error) {
      rethrow(error, `reclaimTask ${taskId}/${runId}`);
    }
  }

  async reportCompleted(taskId: string, runId: number, credentials: Credentials): Promise<void> {
    try {
      await this.#client('Queue', credentials).reportCompleted(taskId, String(runId));
    } catch (error) {
      rethrow(error, `reportCompleted ${taskId}/${runId}`);
    }
  }

  async reportFailed(taskId: string, runId: number, credentials: Credentials): Promise<void> {
    try {
      await this.#client('Queue', credentials).reportFailed(taskId, String(runId));
    } catch (error) {
      rethrow(error, `reportFailed ${taskId}/${runId}`);
    }
  }

  async reportException(
    taskId: string,
    runId: number,
    reason: string,
    credentials: Credentials,
  ): Promise<void> {
    try {
      await this.#client('Queue', credentials).reportException(taskId, String(runId), { reason });
    } catch (error) {
      rethrow(error, `reportException ${taskId}/${runId}`);
    }
  }

  async status(taskId: string): Promise<TaskStatus> {
    const res = await this.#client('Queue', this.#credentials).status(taskId);
    return res.status as TaskStatus;
  }

  async createArtifact(
    taskId: string,
    runId: number,
    name: string,
    request: CreateArtifactRequest,
    credentials: Credentials,
  ): Promise<{ storageType: string } | ObjectArtifactResponse> {
    try {
      const res = await this.#client('Queue', credentials).createArtifact(
        taskId,
        String(runId),
        name,
        request,
      );
      if (res.storageType === 'object') {
        return { ...res, credentials: toCredentials(res.credentials) } as ObjectArtifactResponse;
      }
      return res;
    } catch (error) {
      rethrow(error, `createArtifact ${name}`);
    }
  }

  async finishArtifact(
    taskId: string,
    runId: number,
    name: string,
    uploadId: string,
    credentials: Credentials,
  ): Promise<void> {
    try {
      await this.#client('Queue', credentials).finishArtifact(taskId, String(runId), name, { uploadId });
    } catch (error) {
      rethrow(error, `finishArtifact ${name}`);
    }
  }

  async createUpload(
    name: string,
    request: {
      projectId: string;
      uploadId: string;
      expires: string;
      proposedUploadMethods: UploadMethodProposal;
    },
    credentials: Credentials,
  ): Promise<CreateUploadResponse> {
    return (await this.#client('Object', credentials).createUpload(name, request)) as CreateUploadResponse;
  }

  async finishUpload(
    name: string,
    request: { projectId: string; uploadId: string; hashes: Record<string, string> },
    credentials: Credentials,
  ): Promise<void> {
    await this.#client('Object', credentials).finishUpload(name, request);
  }
}

/** Factory form of `TaskclusterQueue`. */
export function createTaskclusterQueue(options: TaskclusterQueueOptions): TaskclusterQueue {
  return new TaskclusterQueue(options);
}
