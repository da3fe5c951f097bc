// Test helper: runs the iohub CLI from source as a user would, capturing
// its exit status and output.

/** main.ts, for tests that spawn the CLI themselves. */
export const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Runs main.ts with `args` (all permissions); returns status and output. */
export async function iohub(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-ffi",
      "--allow-read",
      "--allow-write",
      "--allow-run",
      "--allow-env",
      MAIN,
      ...args,
    ],
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}
