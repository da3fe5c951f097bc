// Running a program to its end and reading what it printed: how iohub builds
// its guests with binutils and asks QEMU and binutils what they are. One way
// to start them and decode their output, whatever each caller makes of it.

/** What a program that ran to its end printed, decoded as text. */
export interface ToolOutput {
  /** Its exit status (128 + the signal's number when a signal ended it). */
  code: number;
  /** Its standard output. */
  stdout: string;
  /** Its standard error. */
  stderr: string;
}

/**
 * Runs `tool` with `args` and waits for it to end. Its standard input is
 * closed: none of these tools asks for input, and one that did must not wait
 * on iohub's terminal. Throws what Deno throws when `tool` cannot be started
 * (Deno.errors.NotFound when it is not installed). `env` is added to the
 * environment it inherits.
 */
export async function runTool(
  tool: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<ToolOutput> {
  const out = await new Deno.Command(tool, {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}
