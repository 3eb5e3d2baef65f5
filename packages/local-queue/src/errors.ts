/** An error that the HTTP layer turns into the Taskcluster error envelope `{code, message, requestInfo}`. */
export class ApiError extends Error {
  readonly statusCode: number;
  readonly code: string;
  /** Extra response headers (e.g. `www-authenticate` for 401). */
  readonly headers: Record<string, string>;

  constructor(statusCode: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'ApiError';
    this.statusCode = statusCode;
    this.code = code;
    this.headers = headers;
  }
}

export const badRequest = (message: string, code = 'InputError'): ApiError =>
  new ApiError(400, code, message);
export const invalidInput = (message: string): ApiError => new ApiError(400, 'InputValidationError', message);
export const notFound = (message: string): ApiError => new ApiError(404, 'ResourceNotFound', message);
export const conflict = (message: string): ApiError => new ApiError(409, 'RequestConflict', message);
export const unauthorized = (message: string): ApiError =>
  new ApiError(401, 'AuthenticationFailed', message, { 'www-authenticate': 'hawk' });
export const forbidden = (message: string): ApiError => new ApiError(403, 'InsufficientScopes', message);
