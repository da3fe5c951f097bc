// Memory mappings (mmap/munmap) and anonymous shared files (memfd_create):
// guest RAM, KVM's vcpu run area, and the regions SYNC_SYSMEM shares.

import { check, Errno, errno, SysError } from "./errors.ts";
import { cString } from "./fd.ts";
import { libc } from "./libc.ts";

/** Pages may be read. */
export const PROT_READ = 1;
/** Pages may be written. */
export const PROT_WRITE = 2;
/** Share the mapping with the file and other mappers. */
export const MAP_SHARED = 1;
const MFD_CLOEXEC = 1;
/** memfd_create flag: the memfd accepts seals (F_ADD_SEALS). */
export const MFD_ALLOW_SEALING = 2;
const F_ADD_SEALS = 1033;
const F_GET_SEALS = 1034;
/** Seal: no more seals may be added. */
export const F_SEAL_SEAL = 1;
/** Seal: the file cannot shrink (so a mapping of it never SIGBUSes). */
export const F_SEAL_SHRINK = 2;
/** Seal: the file cannot grow. */
export const F_SEAL_GROW = 4;

/** A mapping: its address, length and a byte view over it; unmap() once. */
export class Mapping implements Disposable {
  /** Start of the mapping. */
  readonly pointer: Deno.PointerObject;
  /** Length in bytes. */
  readonly length: number;
  #bytes: Uint8Array<ArrayBuffer> | null = null;
  #mapped = true;

  /** Wraps an existing mapping (used by mmap()). */
  constructor(pointer: Deno.PointerObject, length: number) {
    this.pointer = pointer;
    this.length = length;
  }

  /**
   * The mapped bytes; invalid after unmap(). Made on first use: V8 counts
   * the view's length as memory it must collect for, and a peer replacing
   * terabytes of guest RAM in a loop (SYNC_SYSMEM) would otherwise force a
   * full collection almost every message.
   */
  get bytes(): Uint8Array<ArrayBuffer> {
    if (!this.#mapped) {
      throw new SysError("use of unmapped memory", Errno.EINVAL);
    }
    // SAFETY: the mapping stays valid until unmap(); callers drop `bytes`
    // then.
    this.#bytes ??= new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(this.pointer, this.length),
    );
    return this.#bytes;
  }

  /** Guest-visible address as a number (for struct fields). */
  get address(): bigint {
    return BigInt(Deno.UnsafePointer.value(this.pointer));
  }

  /** Unmaps once; later calls do nothing. */
  unmap(): void {
    if (!this.#mapped) return;
    this.#mapped = false;
    this.#bytes = null;
    check(libc.munmap(this.pointer, BigInt(this.length)), "munmap");
  }

  /** Unmaps (for `using`). */
  [Symbol.dispose](): void {
    this.unmap();
  }
}

/** mmap(2): maps `length` bytes of `fd` (or anonymous memory with fd -1). */
export function mmap(
  length: number,
  prot: number,
  flags: number,
  fd = -1,
  offset = 0,
): Mapping {
  const p = libc.mmap(null, BigInt(length), prot, flags, fd, BigInt(offset));
  // MAP_FAILED is (void *)-1.
  if (p === null || Deno.UnsafePointer.value(p) === 0xffffffffffffffffn) {
    throw new SysError("mmap", errno());
  }
  return new Mapping(p, length);
}

/**
 * The seals of a shared-memory file (F_GET_SEALS: a memfd, a tmpfs or a
 * hugetlbfs file), or null for a file anywhere else (EINVAL). The kernel
 * answers without asking the file's filesystem.
 */
export function shmemSeals(fd: number): number | null {
  const r = libc.fcntl(fd, F_GET_SEALS, 0);
  if (r === -1) {
    const e = errno();
    if (e === Errno.EINVAL) return null;
    throw new SysError("fcntl(F_GET_SEALS)", e);
  }
  return r;
}

// struct statfs on x86_64: 120 bytes, f_type (long) at 0.
const statfsBuf = new Uint8Array(120);
const HUGETLBFS_MAGIC = 0x958458f6n;

/**
 * Whether `fd`, a shared-memory file (see shmemSeals), is on hugetlbfs.
 * fstatfs asks the file's filesystem, which for shared memory is the
 * kernel's own: call it only once shmemSeals said so.
 */
export function isHugetlbfs(fd: number): boolean {
  check(libc.fstatfs(fd, statfsBuf), "fstatfs");
  return new DataView(statfsBuf.buffer).getBigInt64(0, true) ===
    HUGETLBFS_MAGIC;
}

/** Adds `seals` to a memfd made with MFD_ALLOW_SEALING (F_ADD_SEALS). */
export function addSeals(fd: number, seals: number): void {
  check(libc.fcntl(fd, F_ADD_SEALS, seals), "fcntl(F_ADD_SEALS)");
}

/**
 * memfd_create(2) of `size` bytes, close-on-exec; returns the fd. `flags`
 * may add MFD_ALLOW_SEALING.
 */
export function memfd(name: string, size: number, flags = 0): number {
  const fd = check(
    libc.memfd_create(cString(name), MFD_CLOEXEC | flags),
    "memfd_create",
  );
  if (libc.ftruncate(fd, BigInt(size)) === -1) {
    const err = new SysError("ftruncate", errno());
    libc.close(fd);
    throw err;
  }
  return fd;
}
