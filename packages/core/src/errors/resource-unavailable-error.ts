import { TcwError, type TcwErrorOptions } from './tcw-error.js';

/** Something the task needs exists but cannot be reached now (a registry outage, say): `resource-unavailable`. */
export class ResourceUnavailableError extends TcwError {
  static readonly code = 'ERR_RESOURCE_UNAVAILABLE';

  constructor(message: string, options: TcwErrorOptions = {}) {
    super(ResourceUnavailableError.code, message, options);
  }
}
