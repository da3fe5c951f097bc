// How our `iohub remote` is started: the command line that runs main.ts
// with the remote's permissions, and a testdev remote on socketpairs for
// the proxy-side tools (doctor, demo, bench, tests).

import { type SocketChild, spawnWithSockets } from "./socket_child.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

/**
 * The default command for `iohub remote`: this Deno running main.ts with the
 * permissions the remote needs (FFI for its system calls, read for dlopen
 * and device modules, and write for the `writable` paths: a trace file, a
 * control socket), under the project's config so the import map resolves.
 */
export function defaultRemoteCommand(writable: string[] = []): string[] {
  return [
    Deno.execPath(),
    "run",
    "--quiet",
    "--no-prompt",
    "--allow-ffi",
    "--allow-read",
    ...(writable.length > 0 ? [`--allow-write=${writable.join(",")}`] : []),
    "--config",
    CONFIG,
    MAIN,
    "remote",
  ];
}

/**
 * Starts `iohub remote` (the default command, with `extra` options) serving
 * one iohub-testdev per id, each on its own socketpair; our ends are the
 * child's `fds`, in `ids` order.
 */
export function spawnTestdevRemote(
  ids: string[],
  extra: string[] = [],
): SocketChild {
  const [program, ...command] = defaultRemoteCommand();
  return spawnWithSockets(program, ids.length, (fds) => [
    ...command,
    ...extra,
    ...ids.flatMap((id, i) => ["--device", `testdev,fd=${fds[i]},id=${id}`]),
  ]);
}
