import type { JSONSchema } from '@tcw/core';

const seconds = (description: string) => ({ type: 'number', minimum: 0, description });

/** The schema of the worker's config file (YAML or JSON). Unknown keys are errors. */
export const workerConfigSchema: JSONSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    rootUrl: {
      type: 'string',
      pattern: '^https?://',
      description: 'A Taskcluster deployment. Absent: the embedded local queue.',
    },
    credentials: {
      type: 'object',
      additionalProperties: false,
      required: ['clientId', 'accessToken'],
      properties: {
        clientId: { type: 'string', minLength: 1 },
        accessToken: { type: 'string', minLength: 1 },
        certificate: { anyOf: [{ type: 'string' }, { type: 'object' }] },
      },
      description: "The worker's own credentials (claimWork, status). Required with rootUrl.",
    },
    worker: {
      type: 'object',
      additionalProperties: false,
      properties: {
        taskQueueId: { type: 'string', pattern: '^[a-zA-Z0-9-_]{1,38}/[a-z]([-a-z0-9]{0,36}[a-z0-9])?$' },
        provisionerId: { type: 'string', pattern: '^[a-zA-Z0-9-_]{1,38}$' },
        workerType: { type: 'string', pattern: '^[a-z]([-a-z0-9]{0,36}[a-z0-9])?$' },
        workerGroup: { type: 'string', pattern: '^[a-zA-Z0-9-_]{1,38}$' },
        workerId: { type: 'string', pattern: '^[a-zA-Z0-9-_]{1,38}$' },
        capacity: { type: 'integer', minimum: 1, maximum: 1000 },
        workDir: { type: 'string', minLength: 1 },
        shutdownGracePeriod: seconds('graceful stop: how long running tasks may go on (default 300)'),
        abortGracePeriod: seconds('SIGTERM → SIGKILL delay when tasks are aborted (default 10)'),
        cancelPollInterval: seconds(
          'how often a running task is checked for cancellation (default 1 local, 5 remote)',
        ),
        hookTimeout: {
          type: 'number',
          exclusiveMinimum: 0,
          description:
            'seconds: a plugin hook running longer without reporting progress fails the task and stops the worker (default 1800)',
        },
        uploadConcurrency: { type: 'integer', minimum: 1, maximum: 64 },
        maxLogSize: {
          type: 'number',
          minimum: 0,
          description:
            'MiB a task log keeps from its start (default 1024; 0: no limit); then only its last MiB, written at the end',
        },
        minFreeSpace: {
          type: 'number',
          minimum: 0,
          description:
            'MiB: claim only while the work folder has this much free space (default 64; 0: no check)',
        },
      },
    },
    localQueue: {
      type: 'object',
      additionalProperties: false,
      properties: {
        stateDir: { type: 'string', minLength: 1 },
        host: { type: 'string', minLength: 1 },
        port: { type: 'integer', minimum: 0, maximum: 65535 },
        publicUrl: {
          type: 'string',
          pattern: '^https?://',
          description:
            'the URL clients reach the queue at (rootUrl, data URLs), when not http://<host>:<port> (host 0.0.0.0, a proxy)',
        },
        config: { type: 'object', description: 'the local queue config (clients, secrets, timeouts)' },
        thread: {
          type: 'boolean',
          description:
            "run the embedded queue on its own worker thread (default false), so its commits and HTTP serving do not share the worker's event loop",
        },
        inProcess: {
          type: 'boolean',
          description:
            'the worker calls the embedded queue in-process, with the same credential and scope checks (default true); false: over HTTP like any client',
        },
      },
      description: 'The embedded local queue, used when there is no rootUrl.',
    },
    engine: { type: 'string', minLength: 1, description: 'script, docker, native, or an npm package name' },
    engines: {
      type: 'object',
      additionalProperties: { type: 'object' },
      description: 'Options per engine, by engine name',
    },
    plugins: {
      type: 'object',
      properties: {
        disabled: { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true },
      },
      additionalProperties: { type: 'object' },
      description: 'Options per plugin (a key enables a plugin); `disabled` lists plugins not to load',
    },
    logging: {
      type: 'object',
      additionalProperties: false,
      properties: {
        level: { enum: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] },
        pretty: { type: 'boolean', description: 'human-readable logs (default: when stderr is a terminal)' },
      },
    },
  },
  required: ['engine'],
};
