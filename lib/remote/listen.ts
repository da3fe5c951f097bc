// Listening on a socket path for a device's peer: a socket file left behind
// by a dead process is replaced, one a live process listens on is an error.

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
 * Listens on `path`. If the path exists, a connect decides: refused means
 * its listener is gone (the file is removed and replaced), accepted means
 * it is in use (SocketInUseError). Returns the listening fd.
 */
export function listenReplacingStale(path: string): number {
  try {
    return listenUnix(path);
  } catch (e) {
    if (!(e instanceof SysError && e.errno === Errno.EADDRINUSE)) throw e;
  }
  let probe: number;
  try {
    probe = connectUnix(path);
  } catch (e) {
    if (!(e instanceof SysError && e.errno === Errno.ECONNREFUSED)) throw e;
    Deno.removeSync(path);
    return listenUnix(path);
  }
  closeFd(probe);
  throw new SocketInUseError(path);
}
