// UNIX stream sockets: socketpair, listen/accept/connect on a path, and
// sendmsg/recvmsg carrying fds as SCM_RIGHTS. The struct layouts (msghdr,
// iovec, cmsghdr, sockaddr_un) live here and nowhere else.

import {
  check,
  Errno,
  errno,
  retryEintrOrAgain,
  SysError,
  WOULD_BLOCK,
} from "./errors.ts";
import { closeFd, cString } from "./fd.ts";
import { libc } from "./libc.ts";

/** Address family of UNIX sockets. */
export const AF_UNIX = 1;
/** Stream socket type. */
export const SOCK_STREAM = 1;
/** socket flag: close on exec. */
export const SOCK_CLOEXEC = 0o2000000;
/** send flag: no SIGPIPE on a closed peer, EPIPE instead. */
export const MSG_NOSIGNAL = 0x4000;
/** recv flag: received fds get close-on-exec. */
export const MSG_CMSG_CLOEXEC = 0x40000000;
/** recv result flag: control data (fds) was truncated. */
export const MSG_CTRUNC = 0x8;
/** recv flag: do not block. */
export const MSG_DONTWAIT = 0x40;

const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;

// struct msghdr (x86_64): name@0 namelen@8 iov@16 iovlen@24 control@32
// controllen@40 flags@48, 56 bytes. struct iovec: base@0 len@8, 16 bytes.
// struct cmsghdr: len@0 (size_t) level@8 type@12 data@16.
const MSGHDR_SIZE = 56;
const IOVEC_SIZE = 16;
const CMSG_HDR = 16;

// The most fds Linux passes in one message (include/net/scm.h).
const SCM_MAX_FD = 253;

/** CMSG_SPACE for `n` ints. */
function cmsgSpace(n: number): number {
  return CMSG_HDR + ((n * 4 + 7) & ~7);
}

/** Stores a non-negative integer below 2^53 as a little-endian u64. */
function setU64(v: DataView, off: number, value: number): void {
  v.setUint32(off, value >>> 0, true);
  v.setUint32(off + 4, Math.floor(value / 0x1_0000_0000), true);
}

/** Reads a little-endian u64 known to be below 2^53. */
function getU64(v: DataView, off: number): number {
  return v.getUint32(off + 4, true) * 0x1_0000_0000 + v.getUint32(off, true);
}

function address(buf: Uint8Array): number {
  // SAFETY: callers keep `buf` referenced for as long as the address is
  // stored in a struct handed to the kernel (the owning MsgIo object).
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/**
 * The address of the buffer asked for last: asking Deno for a buffer's
 * address costs about a third of the system call it is for.
 */
class AddressCache {
  #buf: Uint8Array | null = null;
  #addr = 0;

  /** `buf`'s address, looked up only when `buf` is not the last one. */
  of(buf: Uint8Array): number {
    if (buf !== this.#buf) {
      this.#buf = buf;
      this.#addr = address(buf);
    }
    return this.#addr;
  }
}

const SO_TYPE = 3;
const SO_DOMAIN = 39;

/** getsockopt(2) of an int option at SOL_SOCKET level. */
function sockoptInt(fd: number, name: number, call: string): number {
  const val = new Int32Array(1);
  const len = new Uint32Array([4]);
  check(
    libc.getsockopt(
      fd,
      SOL_SOCKET,
      name,
      new Uint8Array(val.buffer),
      new Uint8Array(len.buffer),
    ),
    call,
  );
  return val[0];
}

/**
 * Why `fd` is not a connected UNIX stream socket (e.g. "not a socket
 * (ENOTSOCK)", "a datagram socket"), or null when it is one.
 */
export function notConnectedUnixStream(fd: number): string | null {
  let domain: number;
  let type: number;
  try {
    domain = sockoptInt(fd, SO_DOMAIN, "getsockopt(SO_DOMAIN)");
    type = sockoptInt(fd, SO_TYPE, "getsockopt(SO_TYPE)");
  } catch (e) {
    const code = (e as SysError).code;
    if (code === "ENOTSOCK") return "not a socket (ENOTSOCK)";
    if (code === "EBADF") return "not an open fd (EBADF)";
    throw e;
  }
  if (domain !== AF_UNIX) {
    return `a socket of address family ${domain}, not AF_UNIX`;
  }
  if (type !== SOCK_STREAM) {
    return `a UNIX socket of type ${type}, not SOCK_STREAM`;
  }
  const sa = new Uint8Array(110);
  const len = new Uint32Array([sa.length]);
  if (libc.getpeername(fd, sa, new Uint8Array(len.buffer)) === -1) {
    return `a UNIX stream socket with no peer (getpeername: ${
      new SysError("getpeername", errno()).code
    })`;
  }
  return null;
}

/** Creates a connected AF_UNIX stream pair, close-on-exec; returns both fds. */
export function socketpair(): [number, number] {
  const sv = new Int32Array(2);
  check(
    libc.socketpair(
      AF_UNIX,
      SOCK_STREAM | SOCK_CLOEXEC,
      0,
      new Uint8Array(sv.buffer),
    ),
    "socketpair",
  );
  return [sv[0], sv[1]];
}

function sockaddrUn(path: string): Uint8Array<ArrayBuffer> {
  const p = cString(path);
  if (p.length > 108) {
    throw new SysError("sockaddr_un", Errno.EINVAL, `path too long: ${path}`);
  }
  const sa = new Uint8Array(110);
  new DataView(sa.buffer).setUint16(0, AF_UNIX, true);
  sa.set(p, 2);
  return sa;
}

/** Creates a listening UNIX stream socket at `path`; returns its fd. */
export function listenUnix(path: string, backlog = 4): number {
  const fd = check(
    libc.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0),
    "socket",
  );
  try {
    const sa = sockaddrUn(path);
    check(libc.bind(fd, sa, sa.length), `bind ${path}`);
    check(libc.listen(fd, backlog), `listen ${path}`);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  return fd;
}

/** Accepts one connection on a listening socket; returns its fd. */
export function acceptUnix(listenFd: number): number {
  return check(
    libc.accept4(listenFd, null, null, SOCK_CLOEXEC),
    "accept4",
  );
}

/** Connects a new UNIX stream socket to `path`; returns its fd. */
export function connectUnix(path: string): number {
  const fd = check(
    libc.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0),
    "socket",
  );
  const sa = sockaddrUn(path);
  if (libc.connect(fd, sa, sa.length) === -1) {
    const err = new SysError(`connect ${path}`, errno());
    closeFd(fd);
    throw err;
  }
  return fd;
}

/**
 * Preallocated msghdr, iovecs and control buffer for sendmsg/recvmsg with
 * SCM_RIGHTS, so the per-message path allocates nothing. One object serves
 * one thread of messages; received fds land in `fds[0..numFds)` and belong
 * to the caller.
 */
export class MsgIo {
  /** fds received by the last recv() (first `numFds` entries). */
  readonly fds: Int32Array;
  /** How many fds the last recv() delivered. */
  numFds = 0;
  /** Whether the last recv() saw MSG_CTRUNC (fds were dropped). */
  truncated = false;

  readonly #maxFds: number;
  readonly #hdr = new Uint8Array(MSGHDR_SIZE);
  readonly #hdrView = new DataView(this.#hdr.buffer);
  readonly #iov = new Uint8Array(IOVEC_SIZE * 2);
  readonly #iovView = new DataView(this.#iov.buffer);
  readonly #ctl: Uint8Array<ArrayBuffer>;
  readonly #ctlView: DataView;
  readonly #ctlAddr: number;
  // One cache per buffer role: a channel sends from one buffer and
  // receives into another, and a single cache would miss on every call.
  readonly #sendA = new AddressCache();
  readonly #sendB = new AddressCache();
  readonly #recvInto = new AddressCache();

  /**
   * Sends at most `maxFds` fds per message; receives as many as the kernel
   * passes in one (SCM_MAX_FD): any it had to drop for want of room it
   * would close itself, on this thread, and a peer's fd may take for ever
   * to close (see peer_fd.ts). Refusing extra fds is the caller's part.
   */
  constructor(maxFds: number) {
    this.#maxFds = maxFds;
    this.fds = new Int32Array(SCM_MAX_FD);
    this.#ctl = new Uint8Array(cmsgSpace(SCM_MAX_FD));
    this.#ctlView = new DataView(this.#ctl.buffer);
    this.#ctlAddr = address(this.#ctl);
    setU64(this.#hdrView, 16, address(this.#iov));
  }

  /**
   * One sendmsg of `a[0..aLen)` followed by `b[0..bLen)`, with `fds`
   * attached; returns the bytes the kernel took (may be short), or
   * WOULD_BLOCK when a non-blocking socket is full.
   */
  send(
    sock: number,
    a: Uint8Array,
    aLen: number,
    b: Uint8Array | null,
    bLen: number,
    fds: ArrayLike<number>,
  ): number {
    const v = this.#iovView;
    setU64(v, 0, this.#sendA.of(a));
    setU64(v, 8, aLen);
    let iovlen = 1;
    if (b !== null && bLen > 0) {
      setU64(v, 16, this.#sendB.of(b));
      setU64(v, 24, bLen);
      iovlen = 2;
    }
    const h = this.#hdrView;
    setU64(h, 24, iovlen);
    if (fds.length > 0) {
      if (fds.length > this.#maxFds) {
        throw new SysError("sendmsg", Errno.EINVAL, "too many fds");
      }
      const c = this.#ctlView;
      setU64(c, 0, CMSG_HDR + fds.length * 4);
      c.setInt32(8, SOL_SOCKET, true);
      c.setInt32(12, SCM_RIGHTS, true);
      for (let i = 0; i < fds.length; i++) {
        c.setInt32(CMSG_HDR + i * 4, fds[i], true);
      }
      setU64(h, 32, this.#ctlAddr);
      setU64(h, 40, cmsgSpace(fds.length));
    } else {
      setU64(h, 32, 0);
      setU64(h, 40, 0);
    }
    return retryEintrOrAgain(
      () => libc.sendmsg(sock, this.#hdr, MSG_NOSIGNAL),
      "sendmsg",
    );
  }

  /**
   * One recvmsg into `buf[offset..offset + len)`, collecting fds into
   * `this.fds`; returns the bytes read (0 at end of stream), or
   * WOULD_BLOCK when a non-blocking socket has nothing. Received fds are
   * close-on-exec and owned by the caller, also when `truncated` is set.
   */
  recv(
    sock: number,
    buf: Uint8Array,
    len: number,
    flags = 0,
    offset = 0,
  ): number {
    if (offset < 0 || len < 0 || offset + len > buf.length) {
      throw new RangeError(
        `recv: ${len} bytes at ${offset} overrun a ${buf.length}-byte buffer`,
      );
    }
    const v = this.#iovView;
    setU64(v, 0, this.#recvInto.of(buf) + offset);
    setU64(v, 8, len);
    const h = this.#hdrView;
    setU64(h, 24, 1);
    setU64(h, 32, this.#ctlAddr);
    setU64(h, 40, this.#ctl.length);
    h.setInt32(48, 0, true);
    this.numFds = 0;
    this.truncated = false;
    const n = retryEintrOrAgain(
      () => libc.recvmsg(sock, this.#hdr, flags | MSG_CMSG_CLOEXEC),
      "recvmsg",
    );
    if (n === WOULD_BLOCK) return n;
    this.truncated = (h.getInt32(48, true) & MSG_CTRUNC) !== 0;
    const ctlLen = getU64(h, 40);
    const c = this.#ctlView;
    let off = 0;
    while (off + CMSG_HDR <= ctlLen) {
      const clen = getU64(c, off);
      if (clen < CMSG_HDR) break;
      if (
        c.getInt32(off + 8, true) === SOL_SOCKET &&
        c.getInt32(off + 12, true) === SCM_RIGHTS
      ) {
        const count = Math.floor((clen - CMSG_HDR) / 4);
        for (let i = 0; i < count && this.numFds < SCM_MAX_FD; i++) {
          this.fds[this.numFds++] = c.getInt32(off + CMSG_HDR + i * 4, true);
        }
      }
      off += (clen + 7) & ~7;
    }
    return n;
  }
}
