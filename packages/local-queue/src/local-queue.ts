import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { expandScopes, type StaticClient } from './auth.js';
import { openDatabase } from './db.js';
import { randomToken } from './ids.js';
import { createHandler, type FaultSpec, type InProcessClient, type InProcessCredentials } from './server.js';
import { type Logger, QueueService } from './service.js';

export type { FaultSpec, InProcessClient, InProcessCredentials } from './server.js';

/** The services an in-process client can talk to. */
export type LocalQueueService = 'queue' | 'object' | 'auth' | 'secrets' | 'worker-manager';

/** A static client: like `auth.createClient` on a real deployment. */
export interface LocalQueueClientConfig {
  clientId: string;
  accessToken: string;
  scopes: string[];
}

/** A static worker that may call `workerManager.registerWorker` (static provider). */
export interface LocalQueueWorkerConfig {
  workerPoolId: string;
  workerGroup: string;
  workerId: string;
  /** 44 characters `[a-zA-Z0-9_-]`, sent as `workerIdentityProof.staticSecret`. */
  staticSecret: string;
  /** Default `static`. */
  providerId?: string;
  /** Returned as `workerConfig` by registerWorker. */
  workerConfig?: Record<string, unknown>;
}

export interface LocalQueueConfig {
  /** Static clients with their scopes (the root client always exists and has `*`). */
  clients?: LocalQueueClientConfig[];
  /** Secrets served by `/api/secrets/v1/secret/<name>`: name → secret object (never expiring). */
  secrets?: Record<string, Record<string, unknown>>;
  /** Static workers for registerWorker / reregisterWorker / removeWorker. */
  workers?: LocalQueueWorkerConfig[];
  /** Seconds a claim lasts before reclaim (Taskcluster's TASK_CLAIM_TIMEOUT). Default 1200. */
  claimTimeout?: number;
  /** Seconds a claimWork call waits for work (long poll). Default 20. */
  claimWorkTimeout?: number;
  /** Seconds after a deadline before the task is resolved `deadline-exceeded`. Default 0. */
  deadlineDelay?: number;
  /** Seconds between sweeps that delete expired tasks, artifacts, objects and secrets (0: never). Default 3600. */
  expirySweepInterval?: number;
  /** Longest allowed task deadline, in days. Default 5. */
  maxTaskDeadlineDays?: number;
  /** Seconds a registered worker's credentials last. Default 345600 (96 h). */
  reregistrationTimeout?: number;
  /**
   * Roles: roleId → scopes, granted to every holder of `assume:<roleId>` (a roleId ending in `*` matches a prefix,
   * and `<..>` in its scopes stands for what the `*` matched), as on a real deployment.
   */
  roles?: Record<string, string[]>;
  /** Scopes every caller gets, authenticated or not (the `anonymous` role). */
  anonymousScopes?: string[];
  /**
   * `full` (default): every acknowledged change is fsynced (survives power loss). `process`: WAL with
   * synchronous=NORMAL and no fsync of object files: survives SIGKILL of the queue process, not a machine crash;
   * several times faster on slow disks.
   */
  durability?: 'full' | 'process';
  /** Root credentials to use instead of generating them in the state directory. */
  rootClient?: { clientId: string; accessToken: string };
}

export interface LocalQueueLogger extends Logger {
  child?(bindings: object): unknown;
}

export interface LocalQueueOptions {
  /** Directory for the database and object bytes (created if missing). */
  stateDir: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port. */
  port?: number;
  /**
   * The URL clients reach this queue at (its `rootUrl`, and the base of the data URLs of object uploads and
   * downloads), when that is not `http://<host>:<port>`: a host name or address other machines use, a proxy in
   * front. Without it, a queue listening on all interfaces (`0.0.0.0`, `::`) uses the loopback address, which only
   * clients on this machine can reach.
   */
  publicUrl?: string;
  config?: LocalQueueConfig;
  logger?: LocalQueueLogger;
}

export interface LocalQueue {
  /** `http://<host>:<port>`: give it to taskcluster-client as `rootUrl`. */
  rootUrl: string;
  /** A client with scope `*`. */
  rootCredentials: { clientId: string; accessToken: string };
  /**
   * In-process events: `task-defined`, `task-pending`, `task-claimed` (= `task-running`), `task-completed`,
   * `task-failed`, `task-exception`, `task-resolved`, `artifact-created`; each with `{taskId, runId?, status, …}`.
   */
  events: EventEmitter;
  /**
   * An in-process client of one service, for code running in the same process as the queue (the embedded
   * worker): the methods of taskcluster-client's client of that service, with the same arguments, answers,
   * errors (`statusCode`, `code`), credential and scope checks and injected faults, but no HTTP or Hawk.
   * Without credentials it calls with the anonymous scopes. Object data still moves through the data URLs.
   */
  client(
    service: LocalQueueService,
    credentials?: InProcessCredentials,
    options?: { retries?: number },
  ): InProcessClient;
  /** For tests: make the next N requests (HTTP or in-process) of a route fail (500 by default). */
  injectFaults(spec: FaultSpec | FaultSpec[]): void;
  clearFaults(): void;
  /** Bulk insert without HTTP (benches): n tasks from a template (default queue `local/bench`). */
  createTasks(n: number, template?: Record<string, unknown>): Promise<string[]>;
  close(): Promise<void>;
}

export const DEFAULT_ANONYMOUS_SCOPES = [
  'queue:get-task:*',
  'queue:status:*',
  'queue:get-artifact:public/*',
  'queue:list-artifacts:*',
];

const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} };

/** Reads or creates `<stateDir>/root-credentials.json` (mode 0600). */
function rootCredentials(stateDir: string, configured?: { clientId: string; accessToken: string }) {
  if (configured) return { clientId: configured.clientId, accessToken: configured.accessToken };
  const file = join(stateDir, 'root-credentials.json');
  if (existsSync(file)) {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { clientId?: unknown; accessToken?: unknown };
    if (typeof parsed.clientId !== 'string' || typeof parsed.accessToken !== 'string') {
      throw new Error(`${file}: expected {"clientId": string, "accessToken": string}`);
    }
    chmodSync(file, 0o600);
    return { clientId: parsed.clientId, accessToken: parsed.accessToken };
  }
  const creds = { clientId: 'static/local-root', accessToken: randomToken() };
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
  return creds;
}

function validateConfig(config: LocalQueueConfig): void {
  const num = (key: keyof LocalQueueConfig) => {
    const v = config[key];
    if (v !== undefined && (typeof v !== 'number' || !(v >= 0))) {
      throw new Error(`local-queue config: /${key} must be a non-negative number of seconds`);
    }
  };
  for (const k of [
    'claimTimeout',
    'claimWorkTimeout',
    'deadlineDelay',
    'maxTaskDeadlineDays',
    'reregistrationTimeout',
    'expirySweepInterval',
  ] as const) {
    num(k);
  }
  (config.clients ?? []).forEach((c, i) => {
    if (!c || typeof c.clientId !== 'string' || !c.clientId)
      throw new Error(`local-queue config: /clients/${i}/clientId is required`);
    if (typeof c.accessToken !== 'string' || !c.accessToken) {
      throw new Error(`local-queue config: /clients/${i}/accessToken is required`);
    }
    if (!Array.isArray(c.scopes) || c.scopes.some((s) => typeof s !== 'string')) {
      throw new Error(`local-queue config: /clients/${i}/scopes must be an array of strings`);
    }
  });
  (config.workers ?? []).forEach((w, i) => {
    for (const k of ['workerPoolId', 'workerGroup', 'workerId', 'staticSecret'] as const) {
      if (!w || typeof w[k] !== 'string' || !w[k])
        throw new Error(`local-queue config: /workers/${i}/${k} is required`);
    }
  });
  if (config.durability !== undefined && config.durability !== 'full' && config.durability !== 'process') {
    throw new Error("local-queue config: /durability must be 'full' or 'process'");
  }
  if (config.roles !== undefined) {
    if (typeof config.roles !== 'object' || config.roles === null || Array.isArray(config.roles)) {
      throw new Error('local-queue config: /roles must be an object of roleId → scopes');
    }
    for (const [id, scopes] of Object.entries(config.roles)) {
      if (!Array.isArray(scopes) || scopes.some((x) => typeof x !== 'string')) {
        throw new Error(`local-queue config: /roles/${id} must be an array of strings`);
      }
    }
  }
  if (config.secrets !== undefined && (typeof config.secrets !== 'object' || config.secrets === null)) {
    throw new Error('local-queue config: /secrets must be an object of name → secret');
  }
}

/** `publicUrl` checked (http or https, no query or fragment) and without a trailing slash. */
function checkedPublicUrl(publicUrl: string): string {
  let url: URL;
  try {
    url = new URL(publicUrl);
  } catch {
    throw new Error(`local queue: publicUrl ${JSON.stringify(publicUrl)} is not a URL`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash) {
    throw new Error(
      `local queue: publicUrl ${JSON.stringify(publicUrl)} must be an http or https URL without query or fragment`,
    );
  }
  return url.href.replace(/\/+$/, '');
}

/** The base of rootUrl and data URLs: `publicUrl`, else the address listened on (loopback for a wildcard). */
function publicBaseUrl(publicUrl: string | undefined, host: string, addr: AddressInfo): string {
  if (publicUrl !== undefined) return publicUrl;
  const address = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const urlHost = address.includes(':') ? `[${address}]` : address;
  return `http://${urlHost}:${addr.port}`;
}

/** Starts the queue: opens (or creates) the state directory and listens on host:port. */
export async function startLocalQueue(options: LocalQueueOptions): Promise<LocalQueue> {
  const config = options.config ?? {};
  validateConfig(config);
  const publicUrl = options.publicUrl === undefined ? undefined : checkedPublicUrl(options.publicUrl);
  const logger = options.logger ?? silentLogger;
  const stateDir = resolve(options.stateDir);
  mkdirSync(join(stateDir, 'objects'), { recursive: true, mode: 0o700 });
  const root = rootCredentials(stateDir, config.rootClient);
  const roles = new Map(Object.entries(config.roles ?? {}));
  const expand = (scopes: readonly string[]) => expandScopes(scopes, roles);
  const clients = new Map<string, StaticClient>();
  for (const c of config.clients ?? []) clients.set(c.clientId, { ...c, scopes: expand(c.scopes) });
  clients.set(root.clientId, { ...root, scopes: ['*'] });

  // Durability `full`: commits go to the WAL without an fsync of their own, and every reply waits for a shared,
  // asynchronous fdatasync of the WAL (group commit, off the event loop). Should the WAL file not be there to
  // sync, synchronous=FULL gives the same guarantee one commit at a time.
  const dbFile = join(stateDir, 'queue.sqlite');
  const full = config.durability !== 'process';
  let db = openDatabase(dbFile, 'NORMAL');
  const walFile = `${dbFile}-wal`;
  const groupSync = full && existsSync(walFile);
  if (full && !groupSync) {
    db.close();
    db = openDatabase(dbFile, 'FULL');
  }
  const events = new EventEmitter();
  events.setMaxListeners(0);
  let baseUrl = '';
  const svc = new QueueService({
    db,
    objectsDir: join(stateDir, 'objects'),
    root,
    events,
    logger,
    claimTimeoutMs: (config.claimTimeout ?? 1200) * 1000,
    claimWorkTimeoutMs: (config.claimWorkTimeout ?? 20) * 1000,
    deadlineDelayMs: (config.deadlineDelay ?? 0) * 1000,
    maxTaskDeadlineDays: config.maxTaskDeadlineDays ?? 5,
    reregistrationTimeoutMs: (config.reregistrationTimeout ?? 96 * 3600) * 1000,
    baseUrl: () => baseUrl,
    fsyncObjects: full,
    ...(groupSync ? { walFile } : {}),
  });
  for (const w of config.workers ?? []) svc.upsertStaticWorker(w);
  for (const [name, value] of Object.entries(config.secrets ?? {})) {
    svc.setSecret(name, value, Date.parse('9999-12-31T00:00:00.000Z'));
  }

  const { handler, inProcessClient, injectFaults, clearFaults } = createHandler({
    svc,
    logger,
    lookupClient: (id) => clients.get(id),
    anonymousScopes: expand(config.anonymousScopes ?? DEFAULT_ANONYMOUS_SCOPES),
    expand,
  });
  const server = createServer((req, res) => {
    handler(req, res).catch((err) => logger.error('unhandled request error', err));
  });
  server.keepAliveTimeout = 5000;
  const host = options.host ?? '127.0.0.1';
  try {
    await new Promise<void>((resolveListen, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject);
        resolveListen();
      });
    });
  } catch (err) {
    db.close();
    throw err;
  }
  const addr = server.address() as AddressInfo;
  baseUrl = publicBaseUrl(publicUrl, host, addr);
  if (!options.publicUrl && (host === '0.0.0.0' || host === '::')) {
    logger.warn(
      `listening on all interfaces, but its rootUrl and data URLs name ${baseUrl}: clients on other machines ` +
        'need publicUrl (localQueue.publicUrl in the tcw config)',
      { host },
    );
  }
  svc.start();
  const sweep = () => {
    try {
      svc.expire();
    } catch (err) {
      logger.error('expiry sweep failed', err);
    }
  };
  const sweepSeconds = config.expirySweepInterval ?? 3600;
  let sweepTimer: NodeJS.Timeout | undefined;
  if (sweepSeconds > 0) {
    sweep();
    sweepTimer = setInterval(sweep, sweepSeconds * 1000);
    sweepTimer.unref();
  }
  logger.info('local queue listening', { rootUrl: baseUrl, stateDir });

  let closed = false;
  return {
    rootUrl: baseUrl,
    rootCredentials: { ...root },
    events,
    client: (service, credentials, options) => {
      if (closed) throw new Error('the local queue is closed');
      return inProcessClient(service, credentials, options);
    },
    injectFaults,
    clearFaults,
    createTasks: async (n, template) => {
      const ids = svc.createTasks(n, template);
      await svc.durable();
      return ids;
    },
    close: async () => {
      if (closed) return;
      closed = true;
      if (sweepTimer) clearInterval(sweepTimer);
      // what in-process replies changed since the last sync (they do not wait for it) goes to disk now
      await svc
        .durable()
        .catch((err) => logger.error('the final sync of the state database failed', { err }));
      svc.close();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      db.close();
    },
  };
}
