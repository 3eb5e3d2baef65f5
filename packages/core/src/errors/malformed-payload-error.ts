import { TcwError } from './tcw-error.js';

/** One problem with a task payload: the JSON pointer of the offending field and a sentence for the task log. */
export interface PayloadProblem {
  pointer: string;
  message: string;
}

/**
 * The task's payload (or something it refers to) cannot be run: the task resolves exception `malformed-payload`
 * and every problem is written to its log. Problems from several plugins merge into one error.
 */
export class MalformedPayloadError extends TcwError {
  static readonly code = 'ERR_MALFORMED_PAYLOAD';
  readonly problems: readonly PayloadProblem[];

  constructor(problems: PayloadProblem[] | string, options: { cause?: unknown } = {}) {
    const list = typeof problems === 'string' ? [{ pointer: '', message: problems }] : problems;
    super(MalformedPayloadError.code, MalformedPayloadError.format(list), options);
    this.problems = list;
  }

  static format(problems: readonly PayloadProblem[]): string {
    return problems.map((p) => (p.pointer ? `${p.pointer}: ${p.message}` : p.message)).join('\n');
  }

  static merge(errors: readonly MalformedPayloadError[]): MalformedPayloadError {
    return new MalformedPayloadError(errors.flatMap((e) => [...e.problems]));
  }

  static isMalformedPayload(error: unknown): error is MalformedPayloadError {
    return TcwError.hasCode(error, MalformedPayloadError.code);
  }
}
