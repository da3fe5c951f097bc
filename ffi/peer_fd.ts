// Closing an fd a peer sent. close(2) can wait on someone else: the last
// close of a file on FUSE sends its daemon a FLUSH and waits for the answer,
// uninterruptibly, for as long as the daemon likes. An fd whose kind cannot
// wait is closed at once; any other on a thread of Deno's blocking pool,
// where a close that never returns holds only that thread.

import { closeFd, cString } from "./fd.ts";
import { libc } from "./libc.ts";
import { shmemSeals } from "./mman.ts";

const link = new Uint8Array(64);
// What /proc/self/fd/N links to for files no filesystem stands behind:
// eventfds and other anonymous inodes, sockets, pipes.
const NO_FILESYSTEM = /^(anon_inode:|socket:\[|pipe:\[)/;

/**
 * Closes `fd`, received from a peer: at once when closing cannot wait
 * (shared memory, an anonymous inode such as an eventfd, a socket, a
 * pipe), else off the JS thread, without waiting for the close to end.
 */
export function closePeerFd(fd: number): void {
  if (closesAtOnce(fd)) {
    closeFd(fd);
    return;
  }
  // Nothing to wait for: a close that fails leaves nothing to undo, and
  // one that never returns must not hold anything up.
  void libc.close_async(fd);
}

// Neither readlink on /proc nor F_GET_SEALS asks the file's filesystem.
function closesAtOnce(fd: number): boolean {
  const n = Number(
    libc.readlink(cString(`/proc/self/fd/${fd}`), link, BigInt(link.length)),
  );
  if (n > 0) {
    const target = new TextDecoder().decode(link.subarray(0, n));
    if (NO_FILESYSTEM.test(target)) return true;
  }
  try {
    return shmemSeals(fd) !== null;
  } catch {
    // A bad fd: nothing to wait for either.
    return true;
  }
}
