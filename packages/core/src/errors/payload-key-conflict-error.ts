import { TcwError } from './tcw-error.js';

/** Two parts (engine or plugins) claim the same top-level payload key: the worker refuses to start. */
export class PayloadKeyConflictError extends TcwError {
  static readonly code = 'ERR_PAYLOAD_KEY_CONFLICT';
  readonly key: string;
  readonly owners: readonly [string, string];

  constructor(key: string, first: string, second: string) {
    super(
      PayloadKeyConflictError.code,
      `payload key "${key}" is claimed by both ${first} and ${second}; disable one of them`,
    );
    this.key = key;
    this.owners = [first, second];
  }
}
