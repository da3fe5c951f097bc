// Sockets whose close releases what a peer queued in them: a control
// connection, and a device's listener with a connection it never accepted,
// may carry a peer's fd whose close waits on that peer (a lingering TCP
// socket). The remote closes them off its serving thread, so the other
// devices are answered meanwhile.

import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
} from "@std/assert";
import {
  closeFd,
  connectUnix,
  Errno,
  eventfd,
  MSG_DONTWAIT,
  MsgIo,
  pollReadable,
  SysError,
} from "../../ffi/mod.ts";
import { Cmd, Message, Received } from "../../lib/mpqemu/mod.ts";
import { lingering } from "../lingering_socket.ts";
import { withTempDir } from "../temp_dir.ts";
import { Client, type RemoteProcess, spawnDevices } from "./remote_process.ts";
import { havePrlimit } from "../requirements.ts";
import { openFds } from "../fd_check.ts";

const IO = new MsgIo(1);

/**
 * Runs `send` (which hands over lingering sockets and closes our copies)
 * with the remote stopped: our close is then never a socket's last (the
 * copy in flight holds it), and the remote's, later, always is. Otherwise
 * a quick remote closes its copy first and our close waits for the hour.
 * Once per remote: stopping it interrupts a lingering close under way.
 */
function handOver(r: RemoteProcess, send: () => void): void {
  Deno.kill(r.child.pid, "SIGSTOP");
  try {
    send();
  } finally {
    Deno.kill(r.child.pid, "SIGCONT");
  }
}

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

/**
 * Runs `fn` with a remote serving device "good" on a socketpair (answering
 * already) and device `id` listening on `path` in a fresh directory.
 */
function withListener(
  id: string,
  fn: (r: RemoteProcess, good: Client, path: string) => Promise<void>,
): Promise<void> {
  return withTempDir("iohub-peer-close-", async (dir) => {
    const path = `${dir}/a.sock`;
    await using r = spawnDevices(["testdev,id=good"], [
      "--device",
      `testdev,socket=${path},id=${id}`,
    ]);
    const good = r.clients[0];
    assert(await answersWithin(good, 5000));
    await fn(r, good, path);
  });
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
      let sock = -1;
      try {
        // Stopped, the remote cannot answer before the fd is in.
        handOver(r, () => {
          sock = connectUnix(control);
          sendAway(sock, fd);
        });
        // The remote answers, then closes the connection: the last close
        // of the lingering socket.
        await untilClosed(sock);
      } finally {
        if (sock >= 0) closeFd(sock);
      }
      await new Promise((done) => setTimeout(done, 200));
      assert(await answersWithin(good, 1000), "the other device is answered");
    } finally {
      conn.close();
    }
  });
});

Deno.test("remote: a connection never accepted, carrying a lingering socket, does not hold up the devices", async () => {
  await withListener("a", async (r, good, path) => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { fd, conn } = await lingering(listener);
    const socks: number[] = [];
    try {
      // Stopped, the remote accepts nothing until both are queued: it then
      // takes the first and closes its listener with the second in it.
      handOver(r, () => {
        socks.push(connectUnix(path), connectUnix(path));
        sendAway(socks[1], fd);
      });
      await new Promise((done) => setTimeout(done, 300));
      assert(await answersWithin(good, 1000), "the other device is answered");
    } finally {
      socks.forEach(closeFd);
      conn.close();
    }
  });
});

/** Sends PCI_CFGREADs carrying `fds` without reading replies; closes ours. */
function sendWithFds(c: Client, fds: number[]): void {
  const m = new Message().encodeCfg(Cmd.PCI_CFGREAD, 0, 0, 4);
  try {
    assertEquals(
      c.sendRaw(m.bytes.subarray(0, m.wireLength), fds),
      m.wireLength,
    );
  } finally {
    fds.forEach(closeFd);
  }
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/** Whether the remote ends `c`'s channel within `ms` (replies before it read). */
async function seesEnd(c: Client, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0 || !await pollReadable(c.ch.fd, Math.ceil(left))) {
      return false;
    }
    try {
      if (c.ch.receive(true) === Received.EOF) return true;
    } catch (e) {
      if (e instanceof SysError && e.errno === Errno.ECONNRESET) return true;
      throw e;
    }
  }
}

Deno.test("remote: a peer whose fds' closes wait on it is cut off, the other device served", async () => {
  await using r = spawnDevices(["testdev,id=bad", "testdev,id=good"]);
  const [bad, good] = r.clients;
  assert(await answersWithin(good, 5000));
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held = [await lingering(listener), await lingering(listener)];
  try {
    // The first lingering close holds a closer thread; the second gets
    // another once the first is stuck.
    handOver(r, () => sendWithFds(bad, [held[0].fd, held[1].fd]));
    assert(await answersWithin(good, 1000), "the other device is answered");
    await sleep(1000);
    sendWithFds(bad, []);
    assert(await answersWithin(good, 1000), "the other device is answered");
    // Its channel's close is left to a closer it has stuck: it sees EOF
    // all the same, at once (shutdown first).
    assert(await seesEnd(bad, 2000), "the peer cut off sees EOF");
  } finally {
    held.forEach((h) => h.conn.close());
  }
  const { code, stderr } = await r.finish();
  assertEquals(code, 1, stderr);
  assertStringIncludes(
    stderr,
    "bad: closed: 2 closes of fds it sent have waited on it for over 200 ms",
  );
});

Deno.test("remote: a burst of fds behind a stuck close is served on", async () => {
  await using r = spawnDevices(["testdev,id=bad", "testdev,id=good"]);
  const [bad, good] = r.clients;
  assert(await answersWithin(good, 5000));
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { fd, conn } = await lingering(listener);
  try {
    // Some tens wait behind it for a moment: that is no peer to cut off.
    handOver(r, () => {
      sendWithFds(bad, [fd]);
      for (let i = 0; i < 12; i++) {
        sendWithFds(bad, Array.from({ length: 7 }, () => eventfd()));
      }
    });
    for (let i = 0; i < 13; i++) {
      assertEquals(bad.ch.receive(), Received.MESSAGE);
    }
    assertEquals(bad.cfgRead(0), 0x10b11234n, "a burst is served");
  } finally {
    conn.close();
  }
  const { code, stderr } = await r.finish();
  assertEquals(code, 0, stderr);
});

Deno.test("remote: a peer that sends fds faster than they close is cut off, the fds it leaves open bounded", async () => {
  await using r = spawnDevices(["testdev,id=bad", "testdev,id=good"]);
  const [bad, good] = r.clients;
  assert(await answersWithin(good, 5000));
  const baseline = openFds(r.child.pid).length;
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { fd, conn } = await lingering(listener);
  try {
    // All queued behind a stuck close before the remote reads any.
    handOver(r, () => {
      sendWithFds(bad, [fd]);
      for (let i = 0; i < 40; i++) {
        sendWithFds(bad, Array.from({ length: 7 }, () => eventfd()));
      }
    });
    assert(await answersWithin(good, 1000), "the other device is answered");
    assert(await seesEnd(bad, 2000), "the peer cut off sees EOF");
    assert(
      openFds(r.child.pid).length - baseline < 400,
      "what it leaves open is bounded",
    );
  } finally {
    conn.close();
  }
  const { code, stderr } = await r.finish();
  assertEquals(code, 1, stderr);
  assertMatch(
    stderr,
    /bad: closed: it sent fds faster than they close \(\d+ waiting\)/,
  );
});

async function prlimitNofile(pid: number, n: number): Promise<void> {
  const out = await new Deno.Command("prlimit", {
    args: [`--pid=${pid}`, `--nofile=${n}:`],
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
}

Deno.test({
  name: "remote: a listener out of fds accepts once fds are free again",
  ignore: !havePrlimit(),
  fn: async () => {
    await withListener("late", async (r, good, path) => {
      const pid = r.child.pid;
      // No fd number left for the connection it would accept: a limit of
      // the lowest one free.
      const open = new Set(
        Deno.readDirSync(`/proc/${pid}/fd`).map((e) => Number(e.name)),
      );
      let lowest = 0;
      while (open.has(lowest)) lowest++;
      await prlimitNofile(pid, lowest);
      const sock = connectUnix(path);
      try {
        await new Promise((done) => setTimeout(done, 300));
        await prlimitNofile(pid, 4096);
        const late = new Client(sock);
        assert(await answersWithin(late, 5000), "accepted after all");
        assert(await answersWithin(good, 1000));
        late.close();
      } catch (e) {
        if (sock >= 0) closeFd(sock);
        throw e;
      }
      const { stderr } = await r.finish();
      assertMatch(stderr, /late: accept failed: accept4: EMFILE .*retrying/);
      assertEquals(stderr.split("accept failed").length, 2, "logged once");
    });
  },
});
