// Listening on a socket path: a socket file left behind by a dead process
// is replaced, one a live process listens on is an error. One rule for the
// devices' sockets and the control socket.

import {
  closeFd,
  connectUnix,
  Errno,
  listenUnix,
  SysError,
} from "../../ffi/mod.ts";

/** A socket path that a live process is listening on. */
export class SocketInUseError extends Error {
  /** Builds the error for `path`. */
  constructor(path: string) {
    super(`${path}: a live process is listening on this socket`);
    this.name = "SocketInUseError";
  }
}

/**
 * Makes `path` free to listen on: nothing there is fine; a socket whose
 * listener is gone (connect refused) is removed; one that accepts a
 * connection is in use (SocketInUseError). Other files are left for
 * bind to refuse.
 */
export function clearStaleSocket(path: string): void {
  let probe: number;
  try {
    probe = connectUnix(path);
  } catch (e) {
    if (e instanceof SysError && e.errno === Errno.ECONNREFUSED) {
      Deno.removeSync(path);
    }
    return;
  }
  closeFd(probe);
  throw new SocketInUseError(path);
}

/** Listens on `path` after clearStaleSocket(); returns the listening fd. */
export function listenReplacingStale(path: string): number {
  clearStaleSocket(path);
  return listenUnix(path);
}
