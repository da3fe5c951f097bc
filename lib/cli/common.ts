// What every iohub subcommand shares: the usage error type (exit 2) and the
// one-line error printer.

import { SysError } from "../../ffi/mod.ts";

/** A bad command line: printed as one line, exit status 2. */
export class UsageError extends Error {
  /** Builds the error with a message that says what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A subcommand: takes its arguments, returns the exit status. */
export interface Command {
  /** One line for `iohub --help`. */
  summary: string;
  /** The full `--help` text. */
  help: string;
  /** Runs the command; throws UsageError on bad arguments. */
  run(args: string[]): Promise<number>;
}

/** One line describing `e` for the user, without a stack trace. */
export function describeError(e: unknown): string {
  if (e instanceof SysError || e instanceof UsageError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}
