// The one logger of iohub's commands: every line has a severity, and the
// command's verbosity (--quiet, default, --verbose) decides what is written.

/** How much a line matters: errors always show, details only with --verbose. */
export type Severity = "error" | "info" | "detail";

/** How much a command says: quiet = errors only, verbose = per-connection details too. */
export type Verbosity = "quiet" | "normal" | "verbose";

/** Receives one line and its severity (e.g. Remote's `log` option). */
export type LogSink = (line: string, severity: Severity) => void;

const SHOWN: Record<Verbosity, readonly Severity[]> = {
  quiet: ["error"],
  normal: ["error", "info"],
  verbose: ["error", "info", "detail"],
};

/** Whether a line of `severity` is written at `verbosity`. */
export function shows(verbosity: Verbosity, severity: Severity): boolean {
  return SHOWN[verbosity].includes(severity);
}

/**
 * A sink writing the lines `verbosity` lets through as `prefix` + line, to
 * stderr unless `write` says otherwise.
 */
export function logSink(
  prefix: string,
  verbosity: Verbosity,
  write: (line: string) => void = (line) => console.error(line),
): LogSink {
  return (line, severity) => {
    if (shows(verbosity, severity)) write(`${prefix}${line}`);
  };
}

/** The command-line flag that selects `verbosity` (none for normal). */
export function verbosityFlags(verbosity: Verbosity): string[] {
  if (verbosity === "normal") return [];
  return [`--${verbosity}`];
}
