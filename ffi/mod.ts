// The libc FFI layer of iohub: typed wrappers over the system calls the
// protocol, IOHUB, remote, proxy and KVM layers use.

export * from "./errors.ts";
export { LIBC_NAME } from "./libc.ts";
export * from "./fd.ts";
export * from "./eventfd.ts";
export * from "./aio.ts";
export * from "./socket.ts";
export * from "./epoll.ts";
export * from "./mman.ts";
export * from "./ioctl.ts";
export * from "./landlock.ts";
export * from "./seccomp.ts";
export * from "./syscalls.ts";
export * from "./thread_park.ts";
export * from "./peer_fd.ts";
export * from "./js_worker.ts";
