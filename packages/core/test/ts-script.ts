/**
 * Arguments for `node` to run `script` (an ES module that may import this package's `.ts` sources) in a child
 * process: the tests that need a real separate process (another user, an exit, a SIGKILL) start it this way.
 */
export function tsScriptArgs(script: string): string[] {
  return [
    '--experimental-strip-types',
    '--disable-warning=ExperimentalWarning',
    '--input-type=module',
    '-e',
    script,
  ];
}
