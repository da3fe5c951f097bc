import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  closeFd,
  Epoll,
  EPOLLIN,
  errnoText,
  EventFd,
  EventfdSignaller,
  isValidFd,
  MAP_SHARED,
  memfd,
  mmap,
  MsgIo,
  pollReadable,
  PROT_READ,
  PROT_WRITE,
  readFd,
  socketpair,
  SysError,
  waitReadable,
  writeFd,
} from "../../ffi/mod.ts";
import { assertNoFdLeak } from "../fd_check.ts";

Deno.test("eventfd counts signals and drains to 0 (EAGAIN)", () =>
  assertNoFdLeak(() => {
    using ev = new EventFd();
    assertEquals(ev.drain(), 0n);
    ev.signal();
    ev.signal();
    assertEquals(ev.drain(), 2n);
    assertEquals(ev.drain(), 0n);
  }));

Deno.test("EventfdSignaller: thousands of signals, reaped as they go, add up; closed once", () =>
  assertNoFdLeak(() => {
    using ev = new EventFd();
    const signaller = new EventfdSignaller();
    for (let i = 0; i < 5000; i++) signaller.signal(ev.fd);
    assertEquals(ev.drain(), 5000n);
    signaller.close();
    signaller.close();
    assertThrows(() => signaller.signal(ev.fd), Error, "closed");
  }));

// In a process of its own: the seccomp filter that takes io_setup away
// stays for the life of the process.
Deno.test("EventfdSignaller: a kernel without AIO is one SysError saying what it is for, no fd left", async () => {
  const ffi = new URL("../../ffi/mod.ts", import.meta.url).href;
  const script = `
    import { denySyscalls, EventfdSignaller, Syscall } from ${
    JSON.stringify(ffi)
  };
    const before = [...Deno.readDirSync("/proc/self/fd")].length;
    denySyscalls([Syscall.io_setup], 38 /* ENOSYS */);
    try {
      new EventfdSignaller();
    } catch (e) {
      console.log(e.name + ": " + e.message);
    }
    console.log([...Deno.readDirSync("/proc/self/fd")].length === before);`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", "--no-check", script],
    stdin: "null",
  }).output();
  assertEquals(new TextDecoder().decode(out.stdout).trim().split("\n"), [
    "SysError: io_setup: ENOSYS (Function not implemented; interrupts are signalled through Linux AIO: the kernel needs CONFIG_AIO and room under fs.aio-max-nr)",
    "true",
  ], new TextDecoder().decode(out.stderr));
});

Deno.test("a failing call throws SysError naming the call and errno", () => {
  const e = assertThrows(() => closeFd(987654), SysError);
  assertEquals(e.code, "EBADF");
  assertEquals(e.call, "close");
  assertEquals(e.message, "close: EBADF (Bad file descriptor)");
});

Deno.test("SysError carries libc's text for the errno, then the detail", () => {
  assertEquals(errnoText(2), "No such file or directory");
  assertEquals(
    new SysError("bind /x", 2).message,
    "bind /x: ENOENT (No such file or directory)",
  );
  assertEquals(
    new SysError("sendmsg", 11, "peer asleep").message,
    "sendmsg: EAGAIN (Resource temporarily unavailable; peer asleep)",
  );
});

Deno.test("OwnedFd close is idempotent and use after close throws", () => {
  const ev = new EventFd();
  const n = ev.fd;
  ev.close();
  ev.close();
  assert(!isValidFd(n));
  assertThrows(() => ev.fd, SysError, "EBADF");
});

Deno.test("sendmsg/recvmsg pass fds with SCM_RIGHTS", () =>
  assertNoFdLeak(() => {
    const [a, b] = socketpair();
    const io = new MsgIo(8);
    using ev = new EventFd();
    try {
      const head = new Uint8Array([1, 2, 3, 4]);
      const body = new Uint8Array([5, 6]);
      assertEquals(io.send(a, head, 4, body, 2, [ev.fd, ev.fd]), 6);
      const rx = new Uint8Array(16);
      assertEquals(io.recv(b, rx, 16), 6);
      assertEquals([...rx.subarray(0, 6)], [1, 2, 3, 4, 5, 6]);
      assertEquals(io.numFds, 2);
      assert(!io.truncated);
      // The received fd is a new descriptor on the same eventfd.
      assert(io.fds[0] !== ev.fd);
      ev.signal();
      const got = new Uint8Array(8);
      readFd(io.fds[1], got);
      assertEquals(got[0], 1);
      for (let i = 0; i < io.numFds; i++) closeFd(io.fds[i]);
    } finally {
      closeFd(a);
      closeFd(b);
    }
  }));

Deno.test("epoll reports the token of a readable fd", () =>
  assertNoFdLeak(() => {
    using ep = new Epoll();
    using ev = new EventFd();
    ep.add(ev.fd, EPOLLIN, 42);
    assertEquals(ep.wait(0), 0);
    ev.signal();
    assertEquals(ep.wait(1000), 1);
    assertEquals(ep.token(0), 42);
    assert((ep.events(0) & EPOLLIN) !== 0);
    ep.remove(ev.fd);
  }));

Deno.test("memfd mapped shared twice sees the same bytes", () =>
  assertNoFdLeak(() => {
    const fd = memfd("t", 4096);
    try {
      using m1 = mmap(4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
      using m2 = mmap(4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
      m1.bytes[100] = 0xab;
      assertEquals(m2.bytes[100], 0xab);
      writeFd(fd, new Uint8Array([7]));
      assertEquals(m2.bytes[0], 7);
      assert(m2.bytes === m2.bytes, "one view, made once");
      m2.unmap();
      // A view of memory no longer mapped would fault: there is none.
      assertThrows(() => m2.bytes, SysError, "use of unmapped memory");
    } finally {
      closeFd(fd);
    }
  }));

Deno.test("waitReadable and pollReadable see an eventfd become readable", () =>
  assertNoFdLeak(async () => {
    using ev = new EventFd();
    assertEquals(waitReadable(ev.fd, 0), false);
    assertEquals(await pollReadable(ev.fd, 10), false);
    ev.signal();
    assertEquals(waitReadable(ev.fd, 1000), true);
    assertEquals(await pollReadable(ev.fd, 1000), true);
  }));
