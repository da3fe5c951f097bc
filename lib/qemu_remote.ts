// Starts QEMU 7.2's own remote device process (`-machine x-remote` with
// `x-remote-object`) on socketpairs, so our proxy (or a benchmark) can sit
// in front of QEMU's C implementation of the mpqemu remote.

import { closeFd, setCloexec, socketpair } from "../ffi/mod.ts";

/** A QEMU device to serve from the remote, e.g. `{ driver: "e1000" }`. */
export interface QemuRemoteDevice {
  /** The -device driver name. */
  driver: string;
  /** Its id (default dev<i>). */
  id?: string;
}

/** A running `qemu-system-x86_64 -machine x-remote`. */
export interface QemuRemote extends AsyncDisposable {
  /** The QEMU process. */
  child: Deno.ChildProcess;
  /** Our end of each device's socket, in order; the caller owns them. */
  fds: number[];
  /** Stops QEMU (SIGTERM) and waits; returns its status and stderr. */
  stop(): Promise<{ code: number; stderr: string }>;
}

/**
 * Spawns QEMU's remote serving `devices`, one socketpair each; QEMU's
 * stderr goes to a temp file (a pipe could fill while a synchronous proxy
 * holds the event loop).
 */
export function spawnQemuRemote(
  qemu: string,
  devices: QemuRemoteDevice[],
): QemuRemote {
  const ours: number[] = [];
  const theirs: number[] = [];
  const args = [
    "-machine",
    "x-remote,vfio-user=off",
    "-nodefaults",
    "-nographic",
    "-monitor",
    "none",
  ];
  try {
    devices.forEach((d, i) => {
      const [a, b] = socketpair();
      ours.push(a);
      theirs.push(b);
      const id = d.id ?? `dev${i}`;
      args.push(
        "-device",
        `${d.driver},id=${id}`,
        "-object",
        `x-remote-object,id=robj${i},devid=${id},fd=${b}`,
      );
    });
  } catch (e) {
    [...ours, ...theirs].forEach(closeFd);
    throw e;
  }
  const logPath = Deno.makeTempFileSync({ prefix: "iohub-qemu-remote-" });
  let child: Deno.ChildProcess;
  theirs.forEach((fd) => setCloexec(fd, false));
  try {
    child = new Deno.Command("/bin/sh", {
      args: ["-c", `exec "$0" "$@" 2>"${logPath}"`, qemu, ...args],
      stdin: "null",
      stdout: "null",
    }).spawn();
  } catch (e) {
    ours.forEach(closeFd);
    Deno.removeSync(logPath);
    throw e;
  } finally {
    theirs.forEach(closeFd);
  }
  let stopped: Promise<{ code: number; stderr: string }> | null = null;
  const stop = (): Promise<{ code: number; stderr: string }> => {
    stopped ??= (async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already exited.
      }
      const status = await child.status;
      const stderr = Deno.readTextFileSync(logPath);
      Deno.removeSync(logPath);
      return { code: status.code, stderr };
    })();
    return stopped;
  };
  return {
    child,
    fds: ours,
    stop,
    async [Symbol.asyncDispose](): Promise<void> {
      await stop();
    },
  };
}
