// The whole libc FFI surface of iohub in one symbol table. Every other ffi/
// module calls through `libc` and turns failures into SysError with check().

/** The libc symbols iohub calls on the JS thread, each with its C signature. */
const blocking = {
  /** int *__errno_location(void) */
  __errno_location: { parameters: [], result: "pointer" },
  /** char *strerror(int errnum) */
  strerror: { parameters: ["i32"], result: "pointer" },
  /** int close(int fd) */
  close: { parameters: ["i32"], result: "i32" },
  /** ssize_t read(int fd, void *buf, size_t n) */
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /** ssize_t write(int fd, const void *buf, size_t n) */
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /** ssize_t pread(int fd, void *buf, size_t n, off_t off) */
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  /**
   * ssize_t preadv2(int fd, const struct iovec *iov, int n, off_t off,
   * int flags)
   */
  preadv2: {
    parameters: ["i32", "buffer", "i32", "i64", "i32"],
    result: "isize",
  },
  /** ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) */
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  /** int fstat(int fd, struct stat *st) */
  fstat: { parameters: ["i32", "buffer"], result: "i32" },
  /** int fstatfs(int fd, struct statfs *buf) */
  fstatfs: { parameters: ["i32", "buffer"], result: "i32" },
  /** int fcntl(int fd, int cmd, int arg) */
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  /** int open(const char *path, int flags, mode_t mode) */
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  /** int pipe2(int fds[2], int flags) */
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  /** int eventfd(unsigned int initval, int flags) */
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  /** int socket(int domain, int type, int protocol) */
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  /** int socketpair(int domain, int type, int protocol, int sv[2]) */
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  /** int bind(int fd, const struct sockaddr *addr, socklen_t len) */
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** int listen(int fd, int backlog) */
  listen: { parameters: ["i32", "i32"], result: "i32" },
  /** int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) */
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  /** int connect(int fd, const struct sockaddr *addr, socklen_t len) */
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** int getsockopt(int fd, int level, int name, void *val, socklen_t *len) */
  getsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "buffer"],
    result: "i32",
  },
  /** int shutdown(int fd, int how) */
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  /** int getpeername(int fd, struct sockaddr *addr, socklen_t *len) */
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  /** ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) */
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  /** ssize_t recvmsg(int fd, struct msghdr *msg, int flags) */
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  /** int epoll_create1(int flags) */
  epoll_create1: { parameters: ["i32"], result: "i32" },
  /** int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) */
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  /** int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout) */
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  /** int poll(struct pollfd *fds, nfds_t n, int timeout) */
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  /** void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) */
  mmap: {
    parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"],
    result: "pointer",
  },
  /** int munmap(void *addr, size_t len) */
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  /** int memfd_create(const char *name, unsigned int flags) */
  memfd_create: { parameters: ["buffer", "u32"], result: "i32" },
  /** int ftruncate(int fd, off_t len) */
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  /** int ioctl(int fd, unsigned long req, unsigned long arg) */
  ioctl_val: {
    name: "ioctl",
    parameters: ["i32", "u64", "u64"],
    result: "i32",
  },
  /** int ioctl(int fd, unsigned long req, void *arg) */
  ioctl_buf: {
    name: "ioctl",
    parameters: ["i32", "u64", "buffer"],
    result: "i32",
  },
  /**
   * long syscall(long nr, long a1, ..., long a5): for calls libc does not
   * wrap (Landlock); glibc's syscall is assembly that takes its integer
   * arguments from registers, so a fixed signature is safe.
   */
  syscall: {
    parameters: ["i64", "i64", "i64", "i64", "i64", "i64"],
    result: "i64",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/**
 * libc's `name` with the signature of `fn`, run by Deno on a thread of its
 * own and answered with a promise: the JS thread, and with it Deno's event
 * loop, goes on while the call waits.
 */
function offThread<const F extends Deno.ForeignFunction>(
  name: string,
  fn: F,
): F & { readonly name: string; readonly nonblocking: true } {
  return { ...fn, name, nonblocking: true };
}

/** All libc symbols iohub uses: the blocking ones and those off the JS thread. */
const symbols = {
  ...blocking,
  open_async: offThread("open", blocking.open),
  epoll_wait_async: offThread("epoll_wait", blocking.epoll_wait),
  poll_async: offThread("poll", blocking.poll),
  ioctl_async: offThread("ioctl", blocking.ioctl_val),
} as const satisfies Deno.ForeignLibraryInterface;

/** The name libc is opened by (also from other threads' isolates). */
export const LIBC_NAME = "libc.so.6";

/** The opened libc with iohub's symbols. */
export const libc: Deno.DynamicLibrary<typeof symbols>["symbols"] = Deno.dlopen(
  LIBC_NAME,
  symbols,
).symbols;
