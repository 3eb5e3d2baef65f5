import { fileURLToPath } from 'node:url';
import { createScriptEngine } from '../src/index.js';

export const fixture = fileURLToPath(new URL('./fixtures/script.mjs', import.meta.url));

export const testSchema = {
  type: 'object',
  properties: {
    action: {
      enum: ['echo-input', 'print', 'print-error', 'write-files', 'symlink-escape', 'sleep', 'none'],
    },
    text: { type: 'string' },
    exitCode: { type: 'integer' },
    seconds: { type: 'number' },
    files: { type: 'object', additionalProperties: { type: 'string' } },
  },
  required: ['action'],
};

export function engine() {
  return createScriptEngine({ command: [process.execPath, fixture], schema: testSchema });
}
