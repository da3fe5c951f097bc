// What every iohub subcommand shares: the usage error type (exit 2), the
// --quiet/--verbose options, the one-line error printer and the stop on
// SIGINT/SIGTERM of the commands that run a guest. It imports no
// FFI, so main.ts can report a failure to load libc itself.

import { parseArgs } from "@std/cli/parse-args";
import type { Verbosity } from "../log.ts";
import { SIGNAL_STATUS } from "../qemu/outcome.ts";

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

/** Names of the boolean options verbosityOf() reads, for parseArgs. */
export const VERBOSITY_OPTIONS = ["quiet", "verbose"];

/** The verbosity parsed options ask for; both flags at once is a UsageError. */
export function verbosityOf(
  parsed: Record<string, unknown>,
  command: string,
): Verbosity {
  if (parsed.quiet === true && parsed.verbose === true) {
    throw new UsageError(
      `${command}: --quiet and --verbose exclude each other`,
    );
  }
  if (parsed.quiet === true) return "quiet";
  return parsed.verbose === true ? "verbose" : "normal";
}

/** The exit statuses every subcommand shares, for the end of its --help. */
export const EXIT_STATUS_HELP = `exit status:
  0    success
  1    runtime failure (one line on stderr says what failed)
  2    bad command line`;

// Deno's wording, for NotCapable and for imports it refused (a TypeError),
// also when a caller wrapped it into its own message.
const PERMISSION_REFUSED =
  /Requires \w+ access to "([^"]*)", run again with the (--allow-[\w-]+) flag/;

/**
 * The exit status for a failure: 2 for a bad command line, 1 for anything
 * else, including a permission Deno refused however it was wrapped.
 */
export function exitStatusOf(e: unknown): number {
  if (e instanceof Error && PERMISSION_REFUSED.test(e.message)) return 1;
  return e instanceof UsageError ? 2 : 1;
}

// Deno's own I/O errors say "No such file or directory (os error 2): open
// '/x'"; iohub's syscall errors say "open /x: ENOENT (No such file or
// directory)". One style for both.
const DENO_IO_ERROR = /^(.*) \(os error \d+\)(?:: (\w+) '(.*)')?$/;

function ioErrorText(e: Error): string | null {
  const code = (e as { code?: unknown }).code;
  const m = DENO_IO_ERROR.exec(e.message);
  if (typeof code !== "string" || m === null) return null;
  const where = m[2] === undefined ? "" : `${m[2]} ${m[3]}: `;
  return `${where}${code} (${m[1]})`;
}

/**
 * One line describing `e` for the user, without a stack trace. A permission
 * Deno refused names the flag that grants it: that happens when main.ts is
 * run by hand instead of through bin/iohub, or compiled by hand.
 */
export function describeError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const m = PERMISSION_REFUSED.exec(e.message);
  if (m === null) return ioErrorText(e) ?? e.message;
  const fix = Deno.build.standalone
    ? "compiled without it: build with deno task compile"
    : "run through bin/iohub";
  return `needs ${m[2]} for ${m[1]} (${fix})`;
}

function unknownArgument(command: string, arg: string): UsageError {
  return new UsageError(
    `${command}: unknown argument '${arg}' (see 'iohub ${command} --help')`,
  );
}

/**
 * The error for an argument `command`'s parser did not expect in `args`. A
 * negative number is one: the parser reads "-1" as a flag, not as the
 * value of the option before it, so it gets a line of its own naming that
 * option.
 */
export function unexpectedArgument(
  command: string,
  arg: string,
  args: readonly string[],
): UsageError {
  if (/^-\d/.test(arg)) {
    const before = args[args.indexOf(arg) - 1];
    const option = before?.startsWith("-") ? `${before} ` : "";
    return new UsageError(
      `${command}: ${option}${arg}: option values are never negative (see 'iohub ${command} --help')`,
    );
  }
  return arg.startsWith("-")
    ? unknownArgument(command, arg)
    : new UsageError(`${command}: unexpected argument '${arg}'`);
}

/** The options a subcommand declares to parseCommandArgs. */
export interface CommandOptions {
  /** Options that take a value. */
  string?: string[];
  /** Options that are flags. */
  boolean?: string[];
  /** Whether arguments that are not options are taken (into `_`). */
  positionals?: boolean;
}

/**
 * `args` parsed as `command`'s command line: any argument it does not
 * declare, an option or (unless it takes them) a positional one, is a
 * UsageError that points at its --help.
 */
export function parseCommandArgs(
  command: string,
  args: string[],
  options: CommandOptions,
): ReturnType<typeof parseArgs> {
  return parseArgs(args, {
    string: options.string,
    boolean: options.boolean,
    unknown: (arg: string) => {
      if (options.positionals === true && !arg.startsWith("-")) return true;
      throw unknownArgument(command, arg);
    },
  });
}

/** The exit status of a run `stop` (StopOnSignals.signal) stopped, or null. */
export function signalStatus(stop: AbortSignal): number | null {
  if (!stop.aborted) return null;
  return SIGNAL_STATUS[stop.reason as keyof typeof SIGNAL_STATUS];
}

/**
 * Stops a run on Ctrl-C or SIGTERM: `signal` aborts with "SIGINT" or
 * "SIGTERM" as its reason (launch() turns that into exit 130 or 143) until
 * this is disposed, which removes the listeners again.
 */
export class StopOnSignals implements Disposable {
  readonly #stop = new AbortController();
  readonly #onInt = (): void => this.#stop.abort("SIGINT");
  readonly #onTerm = (): void => this.#stop.abort("SIGTERM");

  /** Listens for SIGINT and SIGTERM from now on. */
  constructor() {
    Deno.addSignalListener("SIGINT", this.#onInt);
    Deno.addSignalListener("SIGTERM", this.#onTerm);
  }

  /** Aborted by the first of the two signals. */
  get signal(): AbortSignal {
    return this.#stop.signal;
  }

  /** Stops listening. */
  [Symbol.dispose](): void {
    Deno.removeSignalListener("SIGINT", this.#onInt);
    Deno.removeSignalListener("SIGTERM", this.#onTerm);
  }
}
