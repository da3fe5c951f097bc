// How iohub starts another iohub process (the remote behind launch): this
// Deno running main.ts from source, or a compiled binary running itself.

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

/**
 * The Deno permissions a remote runs with from source; scripts/permissions.sh
 * (bin/iohub, the compiled binary) grants at least these (a test checks).
 * FFI for its system calls, read for dlopen and device modules, import for
 * device modules at URLs; write, net, env and run are for device code,
 * which may do file and network I/O or start a helper like any program (a
 * device backed by a file or a TCP service), as under bin/iohub. FFI can reach past all of Deno's flags anyway, so they do
 * not confine a device: --sandbox is the real boundary.
 */
export const REMOTE_PERMISSIONS: readonly string[] = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-run",
  "--allow-import",
];

/**
 * The environment added for every process iohub starts: no Deno update
 * check, which reaches for the network (refused under --sandbox) and opens
 * files and sockets of its own half a second after start (bin/iohub sets
 * the same for itself).
 */
export const CHILD_ENV: Readonly<Record<string, string>> = {
  DENO_NO_UPDATE_CHECK: "1",
};

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
 * the import map) with REMOTE_PERMISSIONS.
 */
export function selfCommand(
  args: string[],
  runtime: SelfRuntime = currentRuntime(),
): string[] {
  if (runtime.standalone) return [runtime.execPath, ...args];
  return [
    runtime.execPath,
    "run",
    "--quiet",
    "--no-prompt",
    ...REMOTE_PERMISSIONS,
    "--config",
    CONFIG,
    MAIN,
    ...args,
  ];
}
