// How our `iohub remote` is started: the command line that runs this
// program as a remote (selfCommand: from source or compiled), and a
// testdev remote on socketpairs for the proxy-side tools (doctor, demo,
// bench, tests).

import { currentRuntime, selfCommand } from "./self_command.ts";
import { type SocketChild, spawnWithSockets } from "./socket_child.ts";

/**
 * The default command for `iohub remote`: this program run as itself (its
 * permissions already cover a trace file and a control socket).
 */
export function defaultRemoteCommand(): string[] {
  return selfCommand(["remote"], currentRuntime());
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
