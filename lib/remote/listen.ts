// Listening on a socket path: a socket file left behind by a dead process
// is replaced; one a live process listens on, or any other kind of file,
// is an error. One rule for the devices' sockets and the control socket.

import {
  closeFd,
  Errno,
  listenUnix,
  O_CLOEXEC,
  openPath,
  readFd,
  SysError,
} from "../../ffi/mod.ts";

/**
 * A socket path that cannot be listened on: in use, not a socket, or
 * refused by the system (a missing directory, no permission, too long).
 */
export class SocketPathError extends Error {
  /** Builds the error for `path`, saying why (naming it unless `why` does). */
  constructor(path: string, why: string) {
    super(why.includes(path) ? why : `${path}: ${why}`);
    this.name = "SocketPathError";
  }
}

// __SO_ACCEPTCON in the Flags column of /proc/net/unix: a listening socket.
const ACCEPTCON = 0x10000;

/**
 * Whether a socket listening on `path` exists, from /proc/net/unix (a
 * connect would tell too, but the listener would take the probe for its
 * peer).
 */
function someoneListens(path: string): boolean {
  const names = new Set([path]);
  try {
    names.add(Deno.realPathSync(path));
  } catch {
    // Not resolvable: the name as given is all there is to compare.
  }
  if (!path.startsWith("/")) names.add(`${Deno.cwd()}/${path}`);
  for (const line of readProcFile("/proc/net/unix").split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || !names.has(f.slice(7).join(" "))) continue;
    if ((parseInt(f[3], 16) & ACCEPTCON) !== 0) return true;
  }
  return false;
}

// Deno refuses /proc/net without --allow-all, which iohub never runs with;
// libc reads it like any file.
function readProcFile(path: string): string {
  const fd = openPath(path, O_CLOEXEC);
  try {
    const decoder = new TextDecoder();
    const buf = new Uint8Array(64 * 1024);
    let text = "";
    for (let n = readFd(fd, buf); n > 0; n = readFd(fd, buf)) {
      text += decoder.decode(buf.subarray(0, n), { stream: true });
    }
    return text + decoder.decode();
  } finally {
    closeFd(fd);
  }
}

/**
 * Makes `path` free to listen on: nothing there is fine; a socket nobody
 * listens on any more is removed; a socket a live process listens on, or
 * a file that is not a socket, is a SocketPathError (never removed).
 */
export function clearStaleSocket(path: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  if (!info.isSocket) {
    throw new SocketPathError(path, "exists and is not a socket");
  }
  if (someoneListens(path)) {
    throw new SocketPathError(
      path,
      "a live process is listening on this socket",
    );
  }
  Deno.removeSync(path);
}

/**
 * Listens on `path` after clearStaleSocket(); returns the listening fd.
 * Whatever keeps it from listening there is a SocketPathError.
 */
export function listenReplacingStale(path: string): number {
  try {
    clearStaleSocket(path);
    return listenUnix(path);
  } catch (e) {
    if (e instanceof SocketPathError || !isPathFault(e)) throw e;
    throw new SocketPathError(path, (e as Error).message);
  }
}

// What the path is to blame for (the command line's fault), as against the
// process running out of fds or memory.
const PATH_ERRNOS: ReadonlySet<number> = new Set([
  Errno.ENOENT,
  Errno.EACCES,
  Errno.ENOTDIR,
  Errno.EROFS,
  Errno.ENAMETOOLONG,
  Errno.EINVAL,
  Errno.EADDRINUSE,
]);

function isPathFault(e: unknown): boolean {
  if (e instanceof SysError) return PATH_ERRNOS.has(e.errno);
  return e instanceof Deno.errors.PermissionDenied ||
    e instanceof Deno.errors.NotADirectory ||
    e instanceof Deno.errors.NotFound;
}
