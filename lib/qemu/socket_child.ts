// A child process that gets one end of each of N socketpairs (the mpqemu
// connections) and writes stderr to a temp file: a pipe would fill while a
// synchronous proxy holds the event loop, and the child would block.

import { closeFd, setCloexec, socketpair } from "../../ffi/mod.ts";
import { CHILD_ENV } from "./self_command.ts";

/** A running child with our end of each socketpair. */
export interface SocketChild extends AsyncDisposable {
  /** The child (its pid is the program's own: sh execs it in place). */
  child: Deno.ChildProcess;
  /** Our end of each socketpair, in order; the caller owns them. */
  fds: number[];
  /**
   * Sends `signal` (none: just waits), waits for the exit and returns the
   * status code and everything the child wrote to stderr.
   */
  finish(signal?: Deno.Signal): Promise<{ code: number; stderr: string }>;
}

/**
 * Runs `program` with the arguments `args(theirFds)` builds, after making
 * `count` socketpairs and letting the child inherit one end of each.
 */
export function spawnWithSockets(
  program: string,
  count: number,
  args: (fds: number[]) => string[],
): SocketChild {
  // Before the socketpairs: if it fails, there is nothing to close yet.
  const logPath = Deno.makeTempFileSync({ prefix: "iohub-child-" });
  const ours: number[] = [];
  const theirs: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const [a, b] = socketpair();
      ours.push(a);
      theirs.push(b);
    }
  } catch (e) {
    [...ours, ...theirs].forEach(closeFd);
    Deno.removeSync(logPath);
    throw e;
  }
  let child: Deno.ChildProcess;
  try {
    const argv = args(theirs);
    // Our sockets are close-on-exec; only the child's ends are inherited.
    theirs.forEach((fd) => setCloexec(fd, false));
    child = new Deno.Command("/bin/sh", {
      args: ["-c", `exec "$0" "$@" 2>"${logPath}"`, program, ...argv],
      stdin: "null",
      stdout: "null",
      env: CHILD_ENV,
    }).spawn();
  } catch (e) {
    ours.forEach(closeFd);
    Deno.removeSync(logPath);
    throw e;
  } finally {
    theirs.forEach(closeFd);
  }
  let finished: Promise<{ code: number; stderr: string }> | null = null;
  const finish = (
    signal?: Deno.Signal,
  ): Promise<{ code: number; stderr: string }> => {
    finished ??= (async () => {
      if (signal !== undefined) {
        try {
          child.kill(signal);
        } catch {
          // Already exited.
        }
      }
      const status = await child.status;
      const stderr = Deno.readTextFileSync(logPath);
      Deno.removeSync(logPath);
      return { code: status.code, stderr };
    })();
    return finished;
  };
  return {
    child,
    fds: ours,
    finish,
    async [Symbol.asyncDispose](): Promise<void> {
      await finish("SIGTERM");
    },
  };
}

/** The last line of a child's stderr (finish()), which says why it failed. */
export function lastLine(stderr: string): string | undefined {
  return stderr.trim().split("\n").pop() || undefined;
}
