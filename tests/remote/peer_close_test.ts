// Sockets whose close releases what a peer queued in them: a control
// connection, and a device's listener with a connection it never accepted,
// may carry a peer's fd whose close waits on that peer (a lingering TCP
// socket). The remote closes them off its serving thread, so the other
// devices are answered meanwhile.

import { assert, assertEquals } from "@std/assert";
import {
  closeFd,
  connectUnix,
  Errno,
  MSG_DONTWAIT,
  MsgIo,
  pollReadable,
  SysError,
} from "../../ffi/mod.ts";
import { Cmd, Received } from "../../lib/mpqemu/mod.ts";
import { lingering } from "../lingering_socket.ts";
import { withTempDir } from "../temp_dir.ts";
import { type Client, spawnDevices } from "./remote_process.ts";

const IO = new MsgIo(1);

/** Sends one byte on `sock` with `fd` attached, then closes our `fd`. */
function sendAway(sock: number, fd: number): void {
  assertEquals(IO.send(sock, new Uint8Array(1), 1, null, 0, [fd]), 1);
  closeFd(fd);
}

/**
 * Whether the device answers a config read within `ms` (a remote stuck in
 * a close would never answer: the test must fail, not hang).
 */
async function answersWithin(c: Client, ms: number): Promise<boolean> {
  c.ch.tx.encodeCfg(Cmd.PCI_CFGREAD, 0, 0, 4);
  c.ch.send(c.ch.tx);
  if (!await pollReadable(c.ch.fd, ms)) return false;
  assertEquals(c.ch.receive(), Received.MESSAGE);
  assertEquals(c.ch.rx.retValue, 0x10b11234n);
  return true;
}

// Until the remote has closed its end (which it left with our byte unread:
// the reset says so too).
async function untilClosed(sock: number): Promise<void> {
  const buf = new Uint8Array(4096);
  for (;;) {
    try {
      if (IO.recv(sock, buf, buf.length, MSG_DONTWAIT) === 0) return;
    } catch (e) {
      if (e instanceof SysError && e.errno === Errno.ECONNRESET) return;
      throw e;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("remote: a control connection carrying a lingering socket does not hold up the devices", async () => {
  await withTempDir("iohub-peer-close-", async (dir) => {
    const control = `${dir}/ctl`;
    await using r = spawnDevices(["testdev,id=good"], ["--control", control]);
    const good = r.clients[0];
    assert(await answersWithin(good, 5000)); // serving, control socket up
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { fd, conn } = await lingering(listener);
    try {
      const sock = connectUnix(control);
      try {
        sendAway(sock, fd);
        // The remote answers, then closes the connection: the last close
        // of the lingering socket.
        await untilClosed(sock);
      } finally {
        closeFd(sock);
      }
      await new Promise((done) => setTimeout(done, 200));
      assert(await answersWithin(good, 1000), "the other device is answered");
    } finally {
      conn.close();
    }
  });
});

Deno.test("remote: a connection never accepted, carrying a lingering socket, does not hold up the devices", async () => {
  await withTempDir("iohub-peer-close-", async (dir) => {
    const path = `${dir}/a.sock`;
    await using r = spawnDevices(["testdev,id=good"], [
      "--device",
      `testdev,socket=${path},id=a`,
    ]);
    const good = r.clients[0];
    assert(await answersWithin(good, 5000)); // serving, listening on path
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { fd, conn } = await lingering(listener);
    const socks: number[] = [];
    try {
      // Stopped, the remote accepts nothing until both are queued: it then
      // takes the first and closes its listener with the second in it.
      Deno.kill(r.child.pid, "SIGSTOP");
      try {
        socks.push(connectUnix(path), connectUnix(path));
        sendAway(socks[1], fd);
      } finally {
        Deno.kill(r.child.pid, "SIGCONT");
      }
      await new Promise((done) => setTimeout(done, 300));
      assert(await answersWithin(good, 1000), "the other device is answered");
    } finally {
      socks.forEach(closeFd);
      conn.close();
    }
  });
});
