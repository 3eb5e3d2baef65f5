/** Taskcluster credentials: permanent (`clientId` + `accessToken`) or temporary (with a `certificate`). */
export interface Credentials {
  clientId: string;
  accessToken: string;
  certificate?: string;
}

/** A task definition as the queue returns it (all fields present). */
export interface TaskDefinition {
  taskQueueId: string;
  provisionerId: string;
  workerType: string;
  schedulerId: string;
  projectId: string;
  taskGroupId: string;
  dependencies: string[];
  requires: 'all-completed' | 'all-resolved';
  routes: string[];
  priority: string;
  retries: number;
  created: string;
  deadline: string;
  expires: string;
  scopes: string[];
  payload: Record<string, unknown>;
  metadata: { name: string; description: string; owner: string; source: string };
  tags: Record<string, string>;
  extra: Record<string, unknown>;
}

export type RunState = 'pending' | 'running' | 'completed' | 'failed' | 'exception';

export interface RunStatus {
  runId: number;
  state: RunState;
  reasonCreated: string;
  reasonResolved?: string;
  workerGroup?: string;
  workerId?: string;
  takenUntil?: string;
  scheduled: string;
  started?: string;
  resolved?: string;
}

export interface TaskStatus {
  taskId: string;
  taskQueueId: string;
  state: RunState | 'unscheduled';
  deadline: string;
  expires: string;
  retriesLeft: number;
  runs: RunStatus[];
}

/** One task handed to this worker by `claimWork`. */
export interface Claim {
  taskId: string;
  runId: number;
  task: TaskDefinition;
  takenUntil: Date;
  credentials: Credentials;
  workerGroup: string;
  workerId: string;
}

/** Who this worker is, as the queue knows it. */
export interface WorkerIdentity {
  /** `<provisionerId>/<workerType>` */
  taskQueueId: string;
  workerGroup: string;
  workerId: string;
}

/** What engines and plugins may know about the task of a run. */
export interface TaskInfo {
  taskId: string;
  runId: number;
  task: TaskDefinition;
  worker: WorkerIdentity;
  rootUrl: string;
}
