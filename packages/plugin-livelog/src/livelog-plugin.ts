import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import {
  BACKING_LOG_NAME,
  ConfigError,
  type Logger,
  type PluginV1,
  RunGoneError,
  silentLogger,
  type TaskHookContext,
  type TaskLogReader,
  type TaskPluginV1,
} from '@tcw/core';

/** The config, as YAML under `plugins.livelog`. */
export interface LivelogOptions {
  /** How long readers still reading a finished task's log may go on after the task is disposed (default 60 s). */
  lingerMs?: number;
  /** `host:port` the log server listens on (default `127.0.0.1:0`: loopback, any free port). */
  listen?: string;
  /** Base URL readers use to reach the server (default `http://<listen host>:<port>`). */
  publicUrl?: string;
}

/** The live log's artifact name. */
export const LIVE_LOG_NAME = 'public/logs/live.log';

const CONTENT_TYPE = 'text/plain; charset=utf-8';

/** The parts of `host:port` (`[::1]:8080` for IPv6). Throws `ConfigError` naming the key. */
export function parseListen(listen: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen);
  const port = match ? Number(match[3]) : Number.NaN;
  if (!match || port > 65535) {
    throw new ConfigError([
      {
        path: 'plugins.livelog.listen',
        message: `must be host:port (e.g. 127.0.0.1:60023 or [::1]:0), got ${JSON.stringify(listen)}`,
      },
    ]);
  }
  return { host: (match[1] ?? match[2]) as string, port };
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

export interface LivelogPlugin extends PluginV1 {
  /** The base URL of the log server once the worker has started (`publicUrl` or derived from `listen`). */
  readonly baseUrl: string | undefined;
}

/**
 * The livelog plugin: one HTTP server per worker serves each running task's log at `/log/<token>` (a random
 * 160-bit token per task), from byte 0 and then every new byte as it is written (chunked, no batching). The
 * task gets a `reference` artifact `public/logs/live.log` to it; once the log is closed and uploaded as
 * `public/logs/live_backing.log` (core does that on every path), `live.log` becomes a `link` to it.
 */
export function livelog(options: LivelogOptions = {}): LivelogPlugin {
  const listen = parseListen(options.listen ?? '127.0.0.1:0');
  const lingerMs = options.lingerMs ?? 60_000;
  if (options.publicUrl !== undefined) {
    let ok = false;
    try {
      ok = ['http:', 'https:'].includes(new URL(options.publicUrl).protocol);
    } catch {}
    if (!ok) {
      throw new ConfigError([
        { path: 'plugins.livelog.publicUrl', message: `must be an http(s) URL, got ${options.publicUrl}` },
      ]);
    }
  }
  const logs = new Map<string, { log: TaskLogReader; responses: Set<ServerResponse> }>();
  let server: Server | undefined;
  let baseUrl: string | undefined;
  let workerLogger: Logger = silentLogger;

  const serve = (req: IncomingMessage, res: ServerResponse) => {
    const match = /^\/log\/([A-Za-z0-9_-]+)$/.exec(new URL(req.url ?? '/', 'http://x').pathname);
    const entry = match ? logs.get(match[1] as string) : undefined;
    if (!entry) {
      res.writeHead(404, { 'Content-Type': CONTENT_TYPE }).end('not found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    res.writeHead(200, {
      'Content-Type': CONTENT_TYPE,
      'Cache-Control': 'no-store',
      'Access-Control-Allow-Origin': '*',
      'X-Content-Type-Options': 'nosniff',
      'X-Streaming': 'true',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    res.socket?.setNoDelay(true);
    res.flushHeaders();
    const reader = entry.log.createReader();
    entry.responses.add(res);
    res.on('close', () => {
      entry.responses.delete(res);
      reader.destroy();
    });
    pipeline(reader, res).catch((error: unknown) => {
      if (!res.destroyed) workerLogger.debug({ err: (error as Error).message }, 'live log reader ended');
    });
  };

  const bestEffort = async (context: TaskHookContext, what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (error) {
      if (RunGoneError.isRunGone(error)) return;
      context.logger.warn({ err: (error as Error).message }, `live log: could not ${what}`);
    }
  };

  return {
    specificationVersion: 'v1',
    name: 'livelog',
    coreRange: '^0.1.0',
    get baseUrl() {
      return baseUrl;
    },
    async init(context) {
      workerLogger = context.logger;
      const srv = createServer(serve);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(listen.port, listen.host, () => {
          srv.off('error', reject);
          resolve();
        });
      });
      server = srv;
      const port = (srv.address() as AddressInfo).port;
      baseUrl = (options.publicUrl ?? `http://${urlHost(listen.host)}:${port}`).replace(/\/+$/, '');
      context.logger.info({ listen: `${listen.host}:${port}`, baseUrl }, 'live log server listening');
    },
    taskPlugin(context): TaskPluginV1 | undefined {
      if (!baseUrl) return undefined;
      const token = randomBytes(20).toString('base64url');
      const url = `${baseUrl}/log/${token}`;
      const entry = { log: context.taskLog, responses: new Set<ServerResponse>() };
      logs.set(token, entry);
      // the reference is created while the sandbox is built and started (it is awaited before the task runs on,
      // and before the link replaces it)
      let referenced: Promise<void> | undefined;
      const relink = async (ctx: TaskHookContext & { backingLogUploaded: boolean }) => {
        await referenced;
        if (!ctx.backingLogUploaded) return;
        await bestEffort(ctx, `link ${LIVE_LOG_NAME} to ${BACKING_LOG_NAME}`, () =>
          ctx.artifacts.createLink(LIVE_LOG_NAME, BACKING_LOG_NAME, CONTENT_TYPE),
        );
      };
      return {
        prepare(ctx) {
          referenced = bestEffort(ctx, `create ${LIVE_LOG_NAME}`, () =>
            ctx.artifacts.createReference(LIVE_LOG_NAME, url, CONTENT_TYPE),
          );
        },
        async started() {
          await referenced;
        },
        finished: relink,
        exception: relink,
        dispose() {
          logs.delete(token);
          // readers still catching up get a while to finish the (closed) log; then they are cut off
          if (entry.responses.size > 0) {
            setTimeout(() => {
              for (const res of entry.responses) res.destroy();
            }, lingerMs).unref();
          }
        },
      };
    },
    async dispose() {
      const srv = server;
      server = undefined;
      baseUrl = undefined;
      if (!srv) return;
      await new Promise<void>((resolve) => {
        srv.close(() => resolve());
        srv.closeAllConnections();
      });
    },
  };
}
