// taskcluster-client@87.1.3 ships no types; this declares the part the docker engine uses (task-image URLs).
declare module 'taskcluster-client' {
  // biome-ignore lint/suspicious/noExplicitAny: the client is generated at run time from API references
  type ApiMethod = (...args: any[]) => any;
  class Queue {
    constructor(options: {
      rootUrl: string;
      credentials?: { clientId: string; accessToken: string; certificate?: string };
    });
    getLatestArtifact: ApiMethod;
    buildUrl(method: ApiMethod, ...args: unknown[]): string;
    buildSignedUrl(method: ApiMethod, ...args: unknown[]): Promise<string> | string;
  }
  const taskcluster: { Queue: typeof Queue };
  export default taskcluster;
}
