// An error the CLI reports and exits on. `code` is an appliance error code (from an HTTP error
// body) or a CLI-only code (exit-codes.ts); the exit code follows from it.

export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** HTTP status when the appliance answered. */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export function usage(message: string): CliError {
  return new CliError('USAGE', message);
}
