// Starts QEMU 7.2's own remote device process (`-machine x-remote` with
// `x-remote-object`) on socketpairs, so our proxy (or a benchmark) can sit
// in front of QEMU's C implementation of the mpqemu remote.

import { type SocketChild, spawnWithSockets } from "./socket_child.ts";

/** A QEMU device to serve from the remote, e.g. `{ driver: "e1000" }`. */
export interface QemuRemoteDevice {
  /** The -device driver name. */
  driver: string;
  /** Its id (default dev<i>). */
  id?: string;
}

/**
 * Spawns QEMU's remote serving `devices`, one socketpair each; `fds` are
 * our ends in order, finish("SIGTERM") stops it.
 */
export function spawnQemuRemote(
  qemu: string,
  devices: QemuRemoteDevice[],
): SocketChild {
  return spawnWithSockets(qemu, devices.length, (fds) => {
    const args = [
      "-machine",
      "x-remote,vfio-user=off",
      "-nodefaults",
      "-nographic",
      "-monitor",
      "none",
    ];
    devices.forEach((d, i) => {
      const id = d.id ?? `dev${i}`;
      args.push(
        "-device",
        `${d.driver},id=${id}`,
        "-object",
        `x-remote-object,id=robj${i},devid=${id},fd=${fds[i]}`,
      );
    });
    return args;
  });
}
