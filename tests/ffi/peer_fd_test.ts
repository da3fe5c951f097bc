// closePeerFd: fds whose close cannot wait on anyone are closed at once,
// any other off the JS thread, and all of them end up closed.

import { assert } from "@std/assert";
import {
  closePeerFd,
  eventfd,
  isValidFd,
  memfd,
  openPath,
  pipe,
  socketpair,
} from "../../ffi/mod.ts";
import { assertNoFdLeak } from "../fd_check.ts";

Deno.test("peer fd: eventfds, sockets, pipes and memfds are closed at once", () =>
  assertNoFdLeak(() => {
    const [s1, s2] = socketpair();
    const [p1, p2] = pipe();
    for (const fd of [eventfd(), s1, s2, p1, p2, memfd("peer", 4096)]) {
      closePeerFd(fd);
      assert(!isValidFd(fd), `fd ${fd} closed at once`);
    }
  }));

Deno.test("peer fd: a file on a filesystem is closed off the JS thread", async () => {
  await assertNoFdLeak(async () => {
    // procfs: whatever the checkout's filesystem, a file behind one.
    const fd = openPath("/proc/self/status", 0);
    closePeerFd(fd);
    for (let i = 0; i < 200 && isValidFd(fd); i++) {
      await new Promise((done) => setTimeout(done, 5));
    }
    assert(!isValidFd(fd), "closed within 1 s");
  });
});
