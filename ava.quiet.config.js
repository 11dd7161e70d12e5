// The quiet phase of `npm test`: tests whose figures depend on the machine being otherwise idle
// (round trips measured against millisecond bounds), run one at a time after the main run.
export default {
  files: ['tests/quiet/**/*.test.ts'],
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx'],
  workerThreads: false,
  concurrency: 1,
  timeout: '5m',
  verbose: true,
};
