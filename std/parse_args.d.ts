// Types for deno-std's untyped JS build of @std/cli/parse-args, reduced to
// the options iohub uses.

/** Options of parseArgs(). */
export interface ParseOptions {
  boolean?: string[];
  string?: string[];
  collect?: string[];
  alias?: Record<string, string>;
  default?: Record<string, unknown>;
  stopEarly?: boolean;
  "--"?: boolean;
  unknown?: (arg: string, key?: string, value?: unknown) => unknown;
}
/** Parsed arguments. */
export interface Args {
  _: (string | number)[];
  "--"?: string[];
  [key: string]: unknown;
}
/** Parses command-line arguments. */
export function parseArgs(args: string[], options?: ParseOptions): Args;
