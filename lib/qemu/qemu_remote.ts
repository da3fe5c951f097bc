// Starts QEMU 7.2's own remote device process (`-machine x-remote` with
// `x-remote-object`) on socketpairs, so our proxy (or a benchmark) can sit
// in front of QEMU's C implementation of the mpqemu remote.
//
// QEMU starts serving the sockets before its initial system reset: the
// remote object's coroutine is entered from a machine-init-done notifier
// and answers what is already queued until it first waits. That reset then
// clears the BARs and the command register a fast proxy has programmed, and
// QEMU's next BAR access fails ("Bad address ... for mem read") and shuts
// it down. Its QMP monitor is served only by the main loop, after the
// reset, so one QMP round trip says the remote is ready.

import { closeFd, readFd, waitReadable, writeFd } from "../../ffi/mod.ts";
import { type SocketChild, spawnWithSockets } from "./socket_child.ts";

// QEMU starts in well under a second; this bounds a hung or slow start.
const READY_TIMEOUT_MS = 10_000;

/** A QEMU device to serve from the remote, e.g. `{ driver: "e1000" }`. */
export interface QemuRemoteDevice {
  /** The -device driver name. */
  driver: string;
  /** Its id (default dev<i>). */
  id?: string;
}

/**
 * Spawns QEMU's remote serving `devices`, one socketpair each, and returns
 * once it has finished starting (see above); `fds` are our ends in order,
 * finish("SIGTERM") stops it. Throws if QEMU exits or does not get ready
 * within 10 s (the child is stopped then).
 */
export async function spawnQemuRemote(
  qemu: string,
  devices: QemuRemoteDevice[],
): Promise<SocketChild> {
  const qmp = devices.length;
  const child = spawnWithSockets(qemu, devices.length + 1, (fds) => {
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
    args.push(
      "-chardev",
      `socket,id=qmp,fd=${fds[qmp]}`,
      "-mon",
      "chardev=qmp,mode=control",
    );
    return args;
  });
  const qmpFd = child.fds.pop()!;
  try {
    awaitQmpReady(qmpFd);
  } catch (e) {
    child.fds.forEach(closeFd);
    const { stderr } = await child.finish("SIGTERM");
    const last = stderr.trim().split("\n").pop();
    throw new Error(
      `QEMU remote ${qemu} did not start: ${(e as Error).message}` +
        (last ? ` (${last})` : ""),
    );
  } finally {
    closeFd(qmpFd);
  }
  return child;
}

// Negotiates QMP capabilities and waits for the answer, which QEMU's main
// loop sends only after machine creation and the initial reset.
function awaitQmpReady(fd: number): void {
  const deadline = performance.now() + READY_TIMEOUT_MS;
  const buf = new Uint8Array(4096);
  const decoder = new TextDecoder();
  let text = "";
  // One JSON object per line: the greeting, then the command's answer.
  const nextLine = (): string => {
    for (;;) {
      const nl = text.indexOf("\n");
      if (nl >= 0) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        return line;
      }
      const left = deadline - performance.now();
      if (left <= 0 || !waitReadable(fd, Math.ceil(left))) {
        throw new Error(`no QMP answer within ${READY_TIMEOUT_MS} ms`);
      }
      const n = readFd(fd, buf);
      if (n === 0) throw new Error("QEMU closed its QMP monitor");
      text += decoder.decode(buf.subarray(0, n));
    }
  };
  if (!nextLine().includes('"QMP"')) throw new Error("no QMP greeting");
  writeFd(fd, new TextEncoder().encode('{"execute":"qmp_capabilities"}\n'));
  for (;;) {
    const line = nextLine();
    if (line.includes('"return"')) return;
    if (line.includes('"error"')) throw new Error(`QMP: ${line.trim()}`);
  }
}
