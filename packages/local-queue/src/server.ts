import { createReadStream } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type AuthResult, authenticate, authenticateCredentials, type StaticClient } from './auth.js';
import { ApiError, badRequest, notFound } from './errors.js';
import type { Logger, QueueService } from './service.js';

/** A fault to inject (tests): the next `count` requests of `route` fail with `status`. */
export interface FaultSpec {
  /**
   * A route name: an API method as taskcluster-client names it (`reportCompleted`, `createArtifact`,
   * `claimWork`, `createUpload`, …), optionally prefixed by its service (`queue.reportCompleted`), or
   * `objectPut` / `objectGet` for the data URLs that upload/download helpers PUT to and GET from.
   */
  route: string;
  /** How many requests fail (default 1). */
  count?: number;
  /** The HTTP status to answer (default 500). */
  status?: number;
}

type Handler = (ctx: RequestContext) => unknown | Promise<unknown>;

interface Route {
  method: string;
  service: string;
  name: string;
  parts: string[];
  handler: Handler;
  /** Routes that need no Hawk check at all (ping, registerWorker). */
  open?: boolean;
}

export interface RequestContext {
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
  auth: AuthResult;
  signal: AbortSignal;
}

/** A reply with a status other than 200 and/or extra headers. */
export class Reply {
  constructor(
    readonly statusCode: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {}
}

const MAX_BODY = 16 * 1024 * 1024;

function runIdParam(v: string | undefined): number {
  if (!v || !/^\d{1,4}$/.test(v) || Number(v) > 1000) {
    throw badRequest(`runId ${JSON.stringify(v)} must be an integer 0..1000`, 'InvalidRequestArguments');
  }
  return Number(v);
}

export function buildRoutes(svc: QueueService): Route[] {
  const routes: Route[] = [];
  const add = (
    method: string,
    service: string,
    pattern: string,
    name: string,
    handler: Handler,
    open = false,
  ) => routes.push({ method, service, name, parts: pattern.split('/').filter(Boolean), handler, open });
  const ping = () => ({ alive: true, uptime: process.uptime() });
  for (const s of ['queue', 'object', 'auth', 'secrets', 'worker-manager'])
    add('GET', s, 'ping', 'ping', ping, true);

  // queue
  add('PUT', 'queue', 'task/:taskId', 'createTask', (c) =>
    svc.createTask(c.params.taskId!, c.body, c.auth.scopes),
  );
  add('GET', 'queue', 'task/:taskId', 'task', (c) => svc.task(c.params.taskId!, c.auth.scopes));
  add('GET', 'queue', 'task/:taskId/status', 'status', (c) => svc.getStatus(c.params.taskId!, c.auth.scopes));
  add('GET', 'queue', 'task-group/:taskGroupId/list', 'listTaskGroup', (c) =>
    svc.listTaskGroup(c.params.taskGroupId!, c.query, c.auth.scopes),
  );
  add('GET', 'queue', 'task-group/:taskGroupId', 'getTaskGroup', (c) =>
    svc.getTaskGroup(c.params.taskGroupId!, c.auth.scopes),
  );
  add('POST', 'queue', 'task-group/:taskGroupId/seal', 'sealTaskGroup', (c) =>
    svc.sealTaskGroup(c.params.taskGroupId!, c.auth.scopes),
  );
  add('POST', 'queue', 'task-group/:taskGroupId/cancel', 'cancelTaskGroup', (c) =>
    svc.cancelTaskGroup(c.params.taskGroupId!, c.auth.scopes),
  );
  add('GET', 'queue', 'task/:taskId/dependents', 'listDependentTasks', (c) =>
    svc.listDependentTasks(c.params.taskId!, c.query, c.auth.scopes),
  );
  add('POST', 'queue', 'task/:taskId/cancel', 'cancelTask', (c) =>
    svc.cancelTask(c.params.taskId!, c.auth.scopes),
  );
  add('POST', 'queue', 'task/:taskId/schedule', 'scheduleTask', (c) =>
    svc.scheduleTask(c.params.taskId!, c.auth.scopes),
  );
  add('POST', 'queue', 'task/:taskId/rerun', 'rerunTask', (c) =>
    svc.rerunTask(c.params.taskId!, c.auth.scopes),
  );
  add('POST', 'queue', 'claim-work/:taskQueueId*', 'claimWork', (c) =>
    svc.claimWork(c.params.taskQueueId!, c.body, c.auth.scopes, c.signal),
  );
  add('GET', 'queue', 'pending/:taskQueueId*', 'pendingTasks', (c) =>
    svc.queueCounts(c.params.taskQueueId!, c.auth.scopes, false),
  );
  add('GET', 'queue', 'task-queues/:taskQueueId/counts', 'taskQueueCounts', (c) =>
    svc.queueCounts(c.params.taskQueueId!, c.auth.scopes, true),
  );
  add('POST', 'queue', 'task/:taskId/runs/:runId/reclaim', 'reclaimTask', (c) =>
    svc.reclaimTask(c.params.taskId!, runIdParam(c.params.runId), c.auth.scopes),
  );
  for (const [verb, name] of [
    ['completed', 'reportCompleted'],
    ['failed', 'reportFailed'],
    ['exception', 'reportException'],
  ] as const) {
    add('POST', 'queue', `task/:taskId/runs/:runId/${verb}`, name, (c) =>
      svc.resolveTask(c.params.taskId!, runIdParam(c.params.runId), verb, c.body, c.auth.scopes),
    );
  }
  add('POST', 'queue', 'task/:taskId/runs/:runId/artifacts/:name*', 'createArtifact', (c) =>
    svc.createArtifact(c.params.taskId!, runIdParam(c.params.runId), c.params.name!, c.body, c.auth.scopes),
  );
  add('PUT', 'queue', 'task/:taskId/runs/:runId/artifacts/:name*', 'finishArtifact', (c) => {
    svc.finishArtifact(c.params.taskId!, runIdParam(c.params.runId), c.params.name!, c.body, c.auth.scopes);
    return new Reply(204, undefined);
  });
  const getArtifact = (c: RequestContext, runId: number | 'latest') => {
    const r = svc.getArtifact(c.params.taskId!, runId, c.params.name!, c.auth.scopes);
    if (r.kind === 'error') return new Reply(424, { reason: r.reason, message: r.message });
    return new Reply(
      303,
      { storageType: r.storageType, url: r.url },
      { location: r.url, 'x-taskcluster-artifact-storage-type': r.storageType },
    );
  };
  add('GET', 'queue', 'task/:taskId/runs/:runId/artifacts/:name*', 'getArtifact', (c) =>
    getArtifact(c, runIdParam(c.params.runId)),
  );
  add('GET', 'queue', 'task/:taskId/artifacts/:name*', 'getLatestArtifact', (c) => getArtifact(c, 'latest'));
  add('GET', 'queue', 'task/:taskId/runs/:runId/artifact-content/:name*', 'artifact', (c) =>
    svc.artifactContent(c.params.taskId!, runIdParam(c.params.runId), c.params.name!, c.auth.scopes),
  );
  add('GET', 'queue', 'task/:taskId/artifact-content/:name*', 'latestArtifact', (c) =>
    svc.artifactContent(c.params.taskId!, 'latest', c.params.name!, c.auth.scopes),
  );
  add('GET', 'queue', 'task/:taskId/runs/:runId/artifact-info/:name*', 'artifactInfo', (c) =>
    svc.artifactInfo(c.params.taskId!, runIdParam(c.params.runId), c.params.name!, c.auth.scopes),
  );
  add('GET', 'queue', 'task/:taskId/artifact-info/:name*', 'latestArtifactInfo', (c) =>
    svc.artifactInfo(c.params.taskId!, 'latest', c.params.name!, c.auth.scopes),
  );
  add('GET', 'queue', 'task/:taskId/runs/:runId/artifacts', 'listArtifacts', (c) =>
    svc.listArtifacts(c.params.taskId!, runIdParam(c.params.runId), c.query, c.auth.scopes),
  );
  add('GET', 'queue', 'task/:taskId/artifacts', 'listLatestArtifacts', (c) =>
    svc.listArtifacts(c.params.taskId!, 'latest', c.query, c.auth.scopes),
  );

  // object
  add('PUT', 'object', 'upload/:name*', 'createUpload', (c) =>
    svc.createUpload(c.params.name!, c.body, c.auth.scopes),
  );
  add('POST', 'object', 'finish-upload/:name*', 'finishUpload', (c) =>
    svc.finishUpload(c.params.name!, c.body, c.auth.scopes),
  );
  add('PUT', 'object', 'start-download/:name*', 'startDownload', (c) =>
    svc.startDownload(c.params.name!, c.body, c.auth.scopes),
  );
  add('GET', 'object', 'metadata/:name*', 'object', (c) => svc.objectMetadata(c.params.name!, c.auth.scopes));
  add('GET', 'object', 'download/:name*', 'download', (c) => {
    const r = svc.startDownload(c.params.name!, { acceptDownloadMethods: { simple: true } }, c.auth.scopes);
    return new Reply(303, r, { location: r.url as string });
  });

  // auth
  add('GET', 'auth', 'scopes/current', 'currentScopes', (c) => ({ scopes: c.auth.scopes }));

  // secrets
  add('GET', 'secrets', 'secret/:name*', 'get', (c) => svc.getSecret(c.params.name!, c.auth.scopes));
  add('PUT', 'secrets', 'secret/:name*', 'set', (c) => svc.putSecret(c.params.name!, c.body, c.auth.scopes));
  add('DELETE', 'secrets', 'secret/:name*', 'remove', (c) => svc.removeSecret(c.params.name!, c.auth.scopes));

  // worker-manager (static provider subset)
  add('POST', 'worker-manager', 'worker/register', 'registerWorker', (c) => svc.registerWorker(c.body), true);
  add('POST', 'worker-manager', 'worker/reregister', 'reregisterWorker', (c) =>
    svc.reregisterWorker(c.body, c.auth.scopes),
  );
  add('DELETE', 'worker-manager', 'workers/:workerPoolId/:workerGroup/:workerId', 'removeWorker', (c) =>
    svc.removeWorker(c.params.workerPoolId!, c.params.workerGroup!, c.params.workerId!, c.auth.scopes),
  );
  return routes;
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw badRequest(`Bad percent-encoding in ${JSON.stringify(segment)}`, 'InvalidRequestArguments');
  }
}

function matchRoute(route: Route, segments: string[]): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  for (let i = 0; i < route.parts.length; i++) {
    const part = route.parts[i]!;
    if (part.startsWith(':') && part.endsWith('*')) {
      const rest = segments.slice(i);
      if (rest.length === 0 || rest.some((s) => s === '')) return undefined;
      // A wildcard parameter also accepts raw `/` (the real services use Express).
      params[part.slice(1, -1)] = rest.map(decode).join('/');
      return params;
    }
    const seg = segments[i];
    if (seg === undefined || seg === '') return undefined;
    if (part.startsWith(':')) params[part.slice(1)] = decode(seg);
    else if (part !== seg) return undefined;
  }
  return segments.length === route.parts.length ? params : undefined;
}

/** Credentials given to an in-process client: like taskcluster-client's `credentials` option. */
export interface InProcessCredentials {
  clientId: string;
  accessToken: string;
  /** Temporary credentials' certificate (JSON string or object). */
  certificate?: string | Record<string, unknown> | undefined;
}

/** An in-process client of one service: method name → async call (see `LocalQueue.client`). */
// biome-ignore lint/suspicious/noExplicitAny: mirrors taskcluster-client's untyped generated methods
export type InProcessClient = Record<string, (...args: any[]) => Promise<any>>;

/** The error an in-process call rejects with: shaped like taskcluster-client's. */
function inProcessError(
  e: ApiError,
  method: string,
  params: Record<string, string>,
  payload: unknown,
): Error {
  const error = new Error(e.message) as Error & {
    statusCode: number;
    code: string;
    body: Record<string, unknown>;
  };
  error.name = e.code;
  error.statusCode = e.statusCode;
  error.code = e.code;
  error.body = { code: e.code, message: e.message, requestInfo: { method, params, payload } };
  return error;
}

export interface HttpHandlerOptions {
  svc: QueueService;
  logger: Logger;
  lookupClient: (clientId: string) => StaticClient | undefined;
  anonymousScopes: readonly string[];
  /** Role expansion of `assume:` scopes. */
  expand?: (scopes: readonly string[]) => string[];
}

async function readBody(req: IncomingMessage): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY)
      throw new ApiError(413, 'InputTooLarge', `Request body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  return chunks;
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  if (body === undefined) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** The request handler: routing, faults, Hawk authentication, JSON bodies and the error envelope. */
export function createHandler(o: HttpHandlerOptions) {
  const routes = buildRoutes(o.svc);
  const faults: Array<Required<FaultSpec>> = [];

  const takeFault = (service: string, name: string): number | undefined => {
    const i = faults.findIndex((f) => f.route === name || f.route === `${service}.${name}`);
    if (i < 0) return undefined;
    const f = faults[i]!;
    f.count -= 1;
    if (f.count <= 0) faults.splice(i, 1);
    return f.status;
  };

  /** The injected fault of an API route, as the error to answer with (undefined: no fault). */
  const routeFault = (service: string, name: string): ApiError | undefined => {
    const status = takeFault(service, name);
    if (status === undefined) return undefined;
    return new ApiError(
      status,
      status >= 500 ? 'InternalServerError' : 'InjectedFault',
      `injected fault on ${name}`,
    );
  };

  /** An error as answered: ApiErrors as they are, anything else a 500 (logged, its details kept out of replies). */
  const answerFor = (err: unknown, fields: Record<string, unknown>): ApiError => {
    if (err instanceof ApiError) return err;
    o.logger.error('request failed', { ...fields, err });
    return new ApiError(500, 'InternalServerError', 'Internal error (see the queue log)');
  };

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = Date.now();
    const rawUrl = req.url ?? '/';
    const qIndex = rawUrl.indexOf('?');
    const rawPath = qIndex < 0 ? rawUrl : rawUrl.slice(0, qIndex);
    const query = new URLSearchParams(qIndex < 0 ? '' : rawUrl.slice(qIndex + 1));
    const method = (req.method ?? 'GET').toUpperCase();
    let routeName = 'unknown';
    let params: Record<string, string> = {};
    let payload: unknown;
    try {
      if (rawPath.startsWith('/__objects/')) {
        await handleData(req, res, rawPath, query, method);
        return;
      }
      const m = /^\/api\/([a-z-]+)\/v1\/(.*)$/.exec(rawPath);
      if (!m) throw notFound(`No such endpoint: ${method} ${rawPath}`);
      const service = m[1]!;
      const segments = m[2]!.split('/');
      let route: Route | undefined;
      let methodMismatch = false;
      for (const r of routes) {
        if (r.service !== service) continue;
        const p = matchRoute(r, segments);
        if (!p) continue;
        if (r.method !== method) {
          methodMismatch = true;
          continue;
        }
        route = r;
        params = p;
        break;
      }
      if (!route) {
        if (methodMismatch)
          throw new ApiError(405, 'MethodNotAllowed', `${method} is not allowed on ${rawPath}`);
        throw notFound(`No such endpoint: ${method} ${rawPath}`);
      }
      routeName = route.name;
      const fault = routeFault(service, route.name);
      if (fault) {
        await readBody(req).catch(() => []);
        throw fault;
      }
      const raw = Buffer.concat(await readBody(req));
      const text = raw.toString('utf8');
      if (text.trim().length > 0) {
        try {
          payload = JSON.parse(text);
        } catch {
          throw badRequest('Request body is not valid JSON', 'MalformedPayload');
        }
      }
      const hostHeader = req.headers.host ?? '';
      const hm = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(hostHeader);
      const forwardedPort = req.headers['x-forwarded-port'];
      const port =
        typeof forwardedPort === 'string'
          ? forwardedPort
          : (hm?.[2] ?? (req.headers['x-forwarded-proto'] === 'https' ? '443' : '80'));
      const auth: AuthResult = route.open
        ? { clientId: undefined, scopes: [...o.anonymousScopes] }
        : authenticate(
            {
              method,
              resource: rawUrl,
              host: hm?.[1] ?? hostHeader,
              port,
              authorization: req.headers.authorization,
              payload: { contentType: req.headers['content-type'], body: raw },
            },
            o.lookupClient,
            o.anonymousScopes,
            Date.now(),
            o.expand,
          );
      const abort = new AbortController();
      res.on('close', () => {
        if (!res.writableFinished) abort.abort();
      });
      const result = await route.handler({ params, query, body: payload, auth, signal: abort.signal });
      await o.svc.durable();
      if (result instanceof Reply) sendJson(res, result.statusCode, result.body, result.headers);
      else sendJson(res, 200, result);
      o.logger.debug('request', {
        method,
        route: routeName,
        status: res.statusCode,
        ms: Date.now() - started,
      });
    } catch (err) {
      // let the client finish sending so it reads this answer instead of a reset connection
      if (!req.readableEnded) req.resume();
      const e = answerFor(err, { method, route: routeName });
      // a request that failed after a commit (none should) still answers only once that commit is on disk
      await o.svc.durable().catch(() => {});
      if (e === err)
        o.logger.debug('request rejected', { method, route: routeName, status: e.statusCode, code: e.code });
      sendJson(
        res,
        e.statusCode,
        {
          code: e.code,
          message: e.message,
          requestInfo: { method: routeName, params, payload, time: new Date().toJSON() },
        },
        e.headers,
      );
    }
  };

  async function handleData(
    req: IncomingMessage,
    res: ServerResponse,
    rawPath: string,
    query: URLSearchParams,
    method: string,
  ): Promise<void> {
    const m = /^\/__objects\/(get|put)\/(.+)$/.exec(rawPath);
    if (!m) throw notFound(`No such data URL: ${rawPath}`);
    const kind = m[1] as 'get' | 'put';
    const name = decode(m[2]!);
    if ((kind === 'put' && method !== 'PUT') || (kind === 'get' && method !== 'GET' && method !== 'HEAD')) {
      throw new ApiError(405, 'MethodNotAllowed', `${method} is not allowed on this data URL`);
    }
    const faultStatus = takeFault('object', kind === 'put' ? 'objectPut' : 'objectGet');
    if (faultStatus !== undefined) {
      await readBody(req).catch(() => []);
      throw new ApiError(faultStatus, 'InternalServerError', `injected fault on ${kind} ${name}`);
    }
    o.svc.checkDataUrl(kind, name, query);
    if (kind === 'put') {
      const ct = req.headers['content-type'];
      const ce = req.headers['content-encoding'];
      await o.svc.receiveObjectData(
        name,
        req,
        typeof ct === 'string' ? ct : undefined,
        typeof ce === 'string' ? ce : undefined,
      );
      await o.svc.durable();
      res.writeHead(200, { 'content-length': 0 });
      res.end();
      return;
    }
    const obj = o.svc.objectForDownload(name);
    res.writeHead(200, { 'content-type': obj.contentType, 'content-length': obj.size });
    if (method === 'HEAD') {
      res.end();
      return;
    }
    if (obj.data) {
      res.end(obj.data);
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const stream = createReadStream(obj.file!);
      stream.on('error', reject);
      res.on('close', resolve);
      stream.pipe(res);
    });
  }

  /**
   * In-process clients: one async method per API method of a service, named and called like
   * taskcluster-client's (`queue.claimWork(taskQueueId, payload)`, `object.createUpload(name, payload)`): the URL
   * parameters in order, then the payload for methods that take one, then a query object. Same routes, same
   * credential and scope checks, same faults as over HTTP; no HTTP, no Hawk. Errors carry `statusCode`, `code` and
   * `body` like taskcluster-client's; 5xx answers are retried like taskcluster-client does (`retries`, default 5).
   */
  const inProcessClient = (
    service: string,
    credentials: InProcessCredentials | undefined,
    options: { retries?: number } = {},
  ): InProcessClient => {
    const client: InProcessClient = {};
    const retries = options.retries ?? 5;
    for (const route of routes) {
      if (route.service !== service) continue;
      const names = route.parts.filter((p) => p.startsWith(':')).map((p) => p.replace(/^:|\*$/g, ''));
      const hasBody = route.method === 'PUT' || route.method === 'POST';
      client[route.name] = async (...args: unknown[]) => {
        const params: Record<string, string> = {};
        names.forEach((n, i) => {
          const v = args[i];
          if (typeof v !== 'string' && typeof v !== 'number') {
            throw new TypeError(`${service}.${route.name}: URL parameter ${n} must be a string`);
          }
          params[n] = String(v);
        });
        const rest = args.slice(names.length);
        // JSON in and out, as over HTTP: nothing is shared between the caller and the queue's state
        const body = hasBody && rest[0] !== undefined ? JSON.parse(JSON.stringify(rest[0])) : undefined;
        const queryArg = (hasBody ? rest[1] : rest[0]) as Record<string, unknown> | undefined;
        const query = new URLSearchParams();
        for (const [k, v] of Object.entries(queryArg ?? {})) if (v !== undefined) query.set(k, String(v));
        for (let attempt = 0; ; attempt++) {
          try {
            const fault = routeFault(service, route.name);
            if (fault) throw fault;
            const auth: AuthResult =
              route.open || !credentials
                ? { clientId: undefined, scopes: [...o.anonymousScopes] }
                : authenticateCredentials(
                    credentials as Parameters<typeof authenticateCredentials>[0],
                    o.lookupClient,
                    o.anonymousScopes,
                    Date.now(),
                    o.expand,
                  );
            const result = await route.handler({
              params,
              query,
              body,
              auth,
              signal: new AbortController().signal,
            });
            // the reply stays in this process: it need not wait for the fsync (see syncSoon); anything that
            // leaves the process (an HTTP reply) still waits until this change is on disk
            o.svc.syncSoon();
            const value = result instanceof Reply ? result.body : result;
            return value === undefined ? {} : JSON.parse(JSON.stringify(value));
          } catch (err) {
            const e = answerFor(err, { route: route.name });
            o.svc.syncSoon();
            if (e.statusCode >= 500 && attempt < retries) {
              await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 5000)));
              continue;
            }
            throw inProcessError(e, route.name, params, body);
          }
        }
      };
    }
    return client;
  };

  return {
    handler,
    inProcessClient,
    injectFaults(spec: FaultSpec | FaultSpec[]): void {
      for (const f of Array.isArray(spec) ? spec : [spec]) {
        if (!f || typeof f.route !== 'string')
          throw new TypeError('injectFaults: each fault needs a `route` string');
        faults.push({ route: f.route, count: f.count ?? 1, status: f.status ?? 500 });
      }
    },
    clearFaults(): void {
      faults.length = 0;
    },
  };
}
