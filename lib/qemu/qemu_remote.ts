// Starts QEMU 7.2's own remote device process (`-machine x-remote` with
// `x-remote-object`) on socketpairs, so our proxy (or a benchmark) can sit
// in front of QEMU's C implementation of the mpqemu remote.
//
// QEMU answers on the sockets before its initial system reset, which then
// unmaps what a fast proxy programmed (docs/protocol.md, "Order of
// messages"); its QMP monitor answers only after that reset, so the spawn
// waits for one QMP round trip.

import { closeFd, readBefore, writeFd } from "../../ffi/mod.ts";
import {
  lastLine,
  type SocketChild,
  spawnWithSockets,
} from "./socket_child.ts";

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
    await awaitQmpReady(qmpFd);
  } catch (e) {
    child.fds.forEach(closeFd);
    // SIGKILL: a program that is not a working QEMU may ignore SIGTERM.
    const { code, stderr } = await child.finish("SIGKILL");
    const last = lastLine(stderr);
    throw new Error(
      `QEMU remote ${qemu} did not start: ${(e as Error).message} ` +
        `(exit ${code}${last ? `: ${last}` : ""})`,
    );
  } finally {
    closeFd(qmpFd);
  }
  return child;
}

// Negotiates QMP capabilities and waits for the answer, which QEMU's main
// loop sends only after machine creation and the initial reset.
async function awaitQmpReady(fd: number): Promise<void> {
  const deadline = performance.now() + READY_TIMEOUT_MS;
  const buf = new Uint8Array(4096);
  const decoder = new TextDecoder();
  let text = "";
  // QMP sends one JSON object per line: the greeting, events, answers.
  const nextMessage = async (): Promise<Record<string, unknown>> => {
    for (;;) {
      const nl = text.indexOf("\n");
      if (nl >= 0) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        let msg: unknown = null;
        try {
          msg = JSON.parse(line);
        } catch {
          // Reported below with the line.
        }
        if (typeof msg !== "object" || msg === null) {
          throw new Error(`not QMP: ${line.trim().slice(0, 80)}`);
        }
        return msg as Record<string, unknown>;
      }
      const n = await readBefore(fd, buf, deadline);
      if (n === null) {
        throw new Error(`no QMP answer within ${READY_TIMEOUT_MS} ms`);
      }
      if (n === 0) throw new Error("QEMU closed its QMP monitor");
      text += decoder.decode(buf.subarray(0, n), { stream: true });
    }
  };
  if (!("QMP" in await nextMessage())) throw new Error("no QMP greeting");
  writeFd(fd, new TextEncoder().encode('{"execute":"qmp_capabilities"}\n'));
  for (;;) {
    const msg = await nextMessage();
    if ("event" in msg) continue;
    if ("return" in msg) return;
    throw new Error(`QMP refused qmp_capabilities: ${JSON.stringify(msg)}`);
  }
}
