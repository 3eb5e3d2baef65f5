import { definePlugin } from '@tcw/core';
import { type ArtifactsOptions, artifacts } from './artifacts-plugin.js';

export { type ArtifactSpec, artifactsPayloadSchema, type CheckedSpec, checkSpecs } from './artifact-spec.js';
export { type ArtifactsOptions, artifacts } from './artifacts-plugin.js';
export {
  type UploadArtifactsOptions,
  type UploadArtifactsOutcome,
  uploadArtifacts,
} from './upload-artifacts.js';

/** The provider the `tcw` app loads for `plugins.artifacts`. */
export default definePlugin<ArtifactsOptions>({
  name: 'artifacts',
  description: 'Uploads the files and folders a task names as object artifacts',
  coreRange: '^0.1.0',
  configSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      uploadConcurrency: {
        type: 'integer',
        minimum: 1,
        maximum: 100,
        description: 'At most this many uploads of one task at once (default 5)',
      },
    },
  },
  create: (config) => artifacts(config),
});
