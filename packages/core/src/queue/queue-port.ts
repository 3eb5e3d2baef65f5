import type { Claim, Credentials, TaskStatus } from '../task.js';

export interface ReclaimResult {
  takenUntil: Date;
  credentials: Credentials;
}

export interface ObjectArtifactResponse {
  storageType: 'object';
  name: string;
  projectId: string;
  uploadId: string;
  expires: string;
  credentials: Credentials;
}

export type CreateArtifactRequest =
  | { storageType: 'object'; expires: string; contentType: string; contentLength?: number }
  | { storageType: 'reference'; expires: string; url: string; contentType: string }
  | { storageType: 'link'; expires: string; artifact: string; contentType?: string }
  | { storageType: 'error'; expires: string; reason: ErrorArtifactReason; message: string };

export type ErrorArtifactReason =
  | 'file-missing-on-worker'
  | 'invalid-resource-on-worker'
  | 'too-large-file-on-worker'
  | 'file-not-readable-on-worker';

export interface UploadMethodProposal {
  dataInline?: { contentType: string; objectData: string };
  putUrl?: { contentType: string; contentLength: number };
}

export interface CreateUploadResponse {
  projectId: string;
  uploadId: string;
  expires: string;
  uploadMethod: {
    dataInline?: true;
    putUrl?: { url: string; expires: string; headers: Record<string, string> };
  };
}

/**
 * The only place that talks to a Taskcluster queue (and its object service). Task-scoped calls take the run's
 * current credentials explicitly, so a reclaim that renews them is just a new argument. Implementations map a 409
 * to `RunGoneError` and retry 5xx/network errors; everything else is thrown as it came.
 */
export interface QueuePort {
  readonly rootUrl: string;
  claimWork(
    taskQueueId: string,
    request: { workerGroup: string; workerId: string; tasks: number },
  ): Promise<Claim[]>;
  reclaimTask(taskId: string, runId: number, credentials: Credentials): Promise<ReclaimResult>;
  reportCompleted(taskId: string, runId: number, credentials: Credentials): Promise<void>;
  reportFailed(taskId: string, runId: number, credentials: Credentials): Promise<void>;
  reportException(taskId: string, runId: number, reason: string, credentials: Credentials): Promise<void>;
  /** The task's status, with the worker's own credentials (used to notice a cancellation quickly). */
  status(taskId: string): Promise<TaskStatus>;
  createArtifact(
    taskId: string,
    runId: number,
    name: string,
    request: CreateArtifactRequest,
    credentials: Credentials,
  ): Promise<{ storageType: string } | ObjectArtifactResponse>;
  finishArtifact(
    taskId: string,
    runId: number,
    name: string,
    uploadId: string,
    credentials: Credentials,
  ): Promise<void>;
  createUpload(
    name: string,
    request: {
      projectId: string;
      uploadId: string;
      expires: string;
      proposedUploadMethods: UploadMethodProposal;
    },
    credentials: Credentials,
  ): Promise<CreateUploadResponse>;
  finishUpload(
    name: string,
    request: { projectId: string; uploadId: string; hashes: Record<string, string> },
    credentials: Credentials,
  ): Promise<void>;
}
