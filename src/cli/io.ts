// What a command may touch of its process, passed in so commands can be driven from tests.

export interface CliIO {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Progress bars only when a person watches stderr. */
  stderrIsTTY: boolean;
  env: NodeJS.ProcessEnv;
  /** Calls `handler` on Ctrl-C (instead of dying); returns the unsubscribe. */
  onInterrupt(handler: () => void): () => void;
}

export function processIO(): CliIO {
  return {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
    stderrIsTTY: process.stderr.isTTY === true,
    env: process.env,
    onInterrupt(handler) {
      process.on('SIGINT', handler);
      return () => void process.off('SIGINT', handler);
    },
  };
}
