// closePeerFd: without a closer an fd is closed at once; with a
// PeerFdCloser every peer fd is closed on its thread, and a close that
// waits (a TCP socket lingering over a full queue) holds that thread only.

import { assert, assertEquals } from "@std/assert";
import {
  asPeerFdOwner,
  closeFd,
  closePeerFd,
  eventfd,
  isValidFd,
  PEER_CLOSE_STUCK_MS,
  PeerFdCloser,
  peerFdsPending,
  peerFdsStuck,
  socketpair,
} from "../../ffi/mod.ts";
import { assertNoFdLeak } from "../fd_check.ts";
import { lingering } from "../lingering_socket.ts";

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  for (const end = performance.now() + ms; performance.now() < end;) {
    if (cond()) return true;
    await new Promise((done) => setTimeout(done, 10));
  }
  return cond();
}

Deno.test("peer fd: without a closer, closed at once", () =>
  assertNoFdLeak(() => {
    const [a, b] = socketpair();
    for (const fd of [eventfd(), a, b]) {
      closePeerFd(fd);
      assert(!isValidFd(fd));
    }
  }));

Deno.test("peer fd: a close that waits on its peer holds the closer's thread, not this one", async () => {
  // The closer's thread holds fds of its own runtime while it runs.
  using closer = await PeerFdCloser.start();
  await assertNoFdLeak(async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { fd, conn } = await lingering(listener);
    let open = true;
    try {
      const t0 = performance.now();
      asPeerFdOwner(5, () => closePeerFd(fd));
      assert(performance.now() - t0 < 100, "closePeerFd returned at once");
      // Still waiting, on the closer's thread, counted as owner 5's (and
      // not yet long enough for a second thread, whose runtime's fds would
      // count as ours here).
      await new Promise((done) => setTimeout(done, PEER_CLOSE_STUCK_MS / 2));
      assertEquals(closer.pending, 1);
      assertEquals([peerFdsPending(5), peerFdsPending(0)], [1, 0]);
      // The other end goes away: the lingering close ends.
      conn.close();
      open = false;
      assert(await until(() => closer.pending === 0, 5000), "closed");
      assertEquals(peerFdsPending(5), 0);
      assert(!isValidFd(fd));
    } finally {
      if (open) conn.close();
    }
  });
});

Deno.test("peer fd: closes queued behind a stuck one go to another thread", async () => {
  using closer = await PeerFdCloser.start();
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { fd, conn } = await lingering(listener);
  try {
    closePeerFd(fd);
    // Once the close has lasted a second, the next ones take a new thread.
    await new Promise((done) => setTimeout(done, 1100));
    const later = Array.from({ length: 100 }, () => eventfd());
    for (const ev of later) closePeerFd(ev);
    assert(
      await until(() => later.every((ev) => !isValidFd(ev)), 5000),
      "the closes behind the stuck one were made",
    );
    assertEquals(closer.pending, 1, "only the lingering one is left");
  } finally {
    conn.close();
  }
  assert(await until(() => closer.pending === 0, 5000));
});

Deno.test("peer fd: one owner's stuck closes take two threads at most; its further fds are left open, the others closed", async () => {
  using closer = await PeerFdCloser.start();
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held = [
    await lingering(listener),
    await lingering(listener),
    await lingering(listener),
  ];
  const asOwner7 = (fd: number): void =>
    asPeerFdOwner(7, () => closePeerFd(fd));
  try {
    // A second into each stuck close, the next fd takes a new thread.
    asOwner7(held[0].fd);
    await new Promise((done) => setTimeout(done, 1100));
    asOwner7(held[1].fd);
    await new Promise((done) => setTimeout(done, 1100));
    assertEquals(peerFdsStuck(7), 2);
    asOwner7(held[2].fd);
    const ev = eventfd();
    closePeerFd(ev);
    assert(await until(() => !isValidFd(ev), 3000), "another's fd is closed");
    assertEquals(closer.dropped, 1, "owner 7's third is left open");
    assert(isValidFd(held[2].fd));
    assertEquals([peerFdsStuck(7), peerFdsPending(7)], [2, 2]);
  } finally {
    for (const h of held) h.conn.close();
  }
  assert(await until(() => closer.pending === 0, 5000));
  closeFd(held[2].fd);
});
