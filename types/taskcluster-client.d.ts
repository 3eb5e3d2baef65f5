// taskcluster-client@87.1.3 ships no types; this declares the part tcw uses, for every package of the repo
// (tsconfig.base.json lists it in `files`). Methods are generated at run time from the API references.
declare module 'taskcluster-client' {
  interface ClientOptions {
    rootUrl: string;
    credentials?: { clientId: string; accessToken: string; certificate?: string | object };
    authorizedScopes?: string[];
    timeout?: number;
    retries?: number;
    delayFactor?: number;
    maxDelay?: number;
  }
  // biome-ignore lint/suspicious/noExplicitAny: the client is generated at run time from API references
  type ApiMethod = (...args: any[]) => any;
  class Client {
    constructor(options: ClientOptions);
    ping: ApiMethod;
    createTask: ApiMethod;
    task: ApiMethod;
    status: ApiMethod;
    cancelTask: ApiMethod;
    scheduleTask: ApiMethod;
    rerunTask: ApiMethod;
    claimWork: ApiMethod;
    reclaimTask: ApiMethod;
    reportCompleted: ApiMethod;
    reportFailed: ApiMethod;
    reportException: ApiMethod;
    createArtifact: ApiMethod;
    finishArtifact: ApiMethod;
    listTaskGroup: ApiMethod;
    getTaskGroup: ApiMethod;
    sealTaskGroup: ApiMethod;
    cancelTaskGroup: ApiMethod;
    listDependentTasks: ApiMethod;
    pendingTasks: ApiMethod;
    taskQueueCounts: ApiMethod;
    getArtifact: ApiMethod;
    getLatestArtifact: ApiMethod;
    artifact: ApiMethod;
    latestArtifact: ApiMethod;
    listArtifacts: ApiMethod;
    listLatestArtifacts: ApiMethod;
    artifactInfo: ApiMethod;
    latestArtifactInfo: ApiMethod;
    createUpload: ApiMethod;
    finishUpload: ApiMethod;
    startDownload: ApiMethod;
    object: ApiMethod;
    get: ApiMethod;
    set: ApiMethod;
    registerWorker: ApiMethod;
    reregisterWorker: ApiMethod;
    removeWorker: ApiMethod;
    currentScopes: ApiMethod;
    expandScopes: ApiMethod;
    buildUrl: ApiMethod;
    buildSignedUrl: ApiMethod;
    use: ApiMethod;
  }
  const taskcluster: {
    Queue: typeof Client;
    Object: typeof Client;
    Auth: typeof Client;
    Secrets: typeof Client;
    WorkerManager: typeof Client;
    slugid(): string;
    fromNow(offset: string, reference?: Date): Date;
    fromNowJSON(offset: string, reference?: Date): string;
    createTemporaryCredentials(options: {
      clientId?: string;
      start: Date;
      expiry: Date;
      scopes: string[];
      credentials: { clientId: string; accessToken: string };
    }): { clientId: string; accessToken: string; certificate: string };
    upload(options: Record<string, unknown>): Promise<void>;
    downloadArtifact(options: Record<string, unknown>): Promise<string>;
  };
  export default taskcluster;
}
