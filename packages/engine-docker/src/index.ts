import { defineEngine } from '@tcw/core';
import { createDockerEngine, DEVICES, type DockerEngineOptions } from './docker-engine.js';

export {
  createDockerEngine,
  DEVICES,
  type DeviceName,
  type DockerEngine,
  type DockerEngineOptions,
  hasScope,
  LABELS,
  workerLabel,
} from './docker-engine.js';
export { decompressAuto, type ImageSpec, isValidImageName, type RegistryAuth, registryOf } from './images.js';

/** The provider the `tcw` app loads for `engine: docker`. Creation fails when dockerd cannot be reached. */
export default defineEngine<DockerEngineOptions>({
  name: 'docker',
  description:
    'Tasks in Docker containers (docker-worker payloads: image, command, capabilities), through dockerd',
  coreRange: '^0.1.0',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      socketPath: {
        type: 'string',
        minLength: 1,
        description: "dockerd's socket (default /var/run/docker.sock)",
      },
      memoryMb: {
        type: 'integer',
        minimum: 6,
        description: 'Memory limit per task container, in MiB (default: none)',
      },
      cpus: {
        type: 'number',
        exclusiveMinimum: 0,
        description: 'CPUs per task container, fractions allowed (default: none)',
      },
      pidsLimit: {
        type: 'integer',
        minimum: 1,
        description: 'Most processes per task container (default: none)',
      },
      network: {
        type: 'string',
        minLength: 1,
        description: 'Docker network mode of task containers (default bridge)',
      },
      allowPrivileged: {
        type: 'boolean',
        description:
          'Tasks may ask for capabilities.privileged, with scope docker-worker:capability:privileged (default false)',
      },
      allowDevices: {
        type: 'array',
        uniqueItems: true,
        items: { enum: [...DEVICES] },
        description:
          'Devices tasks may ask for, each with scope docker-worker:capability:device:<name> (default none)',
      },
      registries: {
        type: 'object',
        description: 'Credentials by registry host (docker.io, ghcr.io, 127.0.0.1:5000) for private images',
        additionalProperties: {
          type: 'object',
          additionalProperties: false,
          required: ['username', 'password'],
          properties: {
            username: { type: 'string', description: 'Registry user name' },
            password: { type: 'string', description: 'Registry password or token (masked in task logs)' },
          },
        },
      },
      imageCacheMaxMb: {
        type: 'integer',
        minimum: 0,
        description:
          'Total MiB of pulled or loaded images kept; least recently used are removed beyond it (default: no limit)',
      },
    },
  },
  create: async (config) => {
    const engine = createDockerEngine(config);
    await engine.checkDaemon();
    return engine;
  },
});
