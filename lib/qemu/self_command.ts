// How iohub starts another iohub process (the remote behind launch): this
// Deno running main.ts from source, or a compiled binary running itself.

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

/** How this process runs: compiled or not, and its executable. */
export interface SelfRuntime {
  /** Whether this is a `deno compile` binary. */
  standalone: boolean;
  /** The executable: Deno, or the compiled binary itself. */
  execPath: string;
}

/** This process's runtime. */
export function currentRuntime(): SelfRuntime {
  return { standalone: Deno.build.standalone, execPath: Deno.execPath() };
}

/**
 * The command line running `iohub ...args` as this process runs: a compiled
 * binary is itself the program (its permissions were fixed when it was
 * compiled); from source, Deno on main.ts under the project's config (for
 * the import map) with what a remote needs: FFI for its system calls, read
 * for dlopen and device modules, import for device modules at URLs, plus
 * `permissions` (Deno flags) for what this run needs beyond them.
 */
export function selfCommand(
  args: string[],
  runtime: SelfRuntime = currentRuntime(),
  permissions: string[] = [],
): string[] {
  if (runtime.standalone) return [runtime.execPath, ...args];
  return [
    runtime.execPath,
    "run",
    "--quiet",
    "--no-prompt",
    "--allow-ffi",
    "--allow-read",
    "--allow-import",
    ...permissions,
    "--config",
    CONFIG,
    MAIN,
    ...args,
  ];
}
