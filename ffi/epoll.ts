// epoll(7): the readiness loop the remote sleeps in. struct epoll_event is
// packed on x86_64: u32 events at 0, u64 data at 4, 12 bytes.

import { check, Errno, errno, SysError } from "./errors.ts";
import { OwnedFd, readFd } from "./fd.ts";
import { libc } from "./libc.ts";

/** Readable. */
export const EPOLLIN = 0x1;
/** Error condition. */
export const EPOLLERR = 0x8;
/** Hang-up. */
export const EPOLLHUP = 0x10;
/** Writable. */
export const EPOLLOUT = 0x4;

const EPOLL_CLOEXEC = 0o2000000;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const EVENT_SIZE = 12;

/**
 * An epoll instance: add/remove fds keyed by a 32-bit token, and wait()
 * into a preallocated event array read back with token()/events().
 */
export class Epoll extends OwnedFd {
  readonly #one = new Uint8Array(EVENT_SIZE);
  readonly #oneView = new DataView(this.#one.buffer);
  readonly #events: Uint8Array;
  readonly #eventsView: DataView;
  readonly #max: number;

  /** Creates the instance with room for `maxEvents` per wait(). */
  constructor(maxEvents = 64) {
    super(check(libc.epoll_create1(EPOLL_CLOEXEC), "epoll_create1"));
    this.#max = maxEvents;
    this.#events = new Uint8Array(EVENT_SIZE * maxEvents);
    this.#eventsView = new DataView(this.#events.buffer);
  }

  /** Watches `fd` for `events`, reporting `token` (a u32) when it fires. */
  add(fd: number, events: number, token: number): void {
    this.#setOne(events, token);
    check(
      libc.epoll_ctl(this.fd, EPOLL_CTL_ADD, fd, this.#one),
      "epoll_ctl(ADD)",
    );
  }

  /** Changes the events watched on `fd` (already added) and its token. */
  modify(fd: number, events: number, token: number): void {
    this.#setOne(events, token);
    check(
      libc.epoll_ctl(this.fd, EPOLL_CTL_MOD, fd, this.#one),
      "epoll_ctl(MOD)",
    );
  }

  #setOne(events: number, token: number): void {
    this.#oneView.setUint32(0, events, true);
    this.#oneView.setUint32(4, token, true);
    this.#oneView.setUint32(8, 0, true);
  }

  /** Stops watching `fd`. */
  remove(fd: number): void {
    check(
      libc.epoll_ctl(this.fd, EPOLL_CTL_DEL, fd, this.#one),
      "epoll_ctl(DEL)",
    );
  }

  /**
   * Waits up to `timeoutMs` (-1: forever) on this thread; returns how many
   * events are ready (0 on timeout or EINTR).
   */
  wait(timeoutMs: number): number {
    const n = libc.epoll_wait(this.fd, this.#events, this.#max, timeoutMs);
    if (n >= 0) return n;
    const e = errno();
    if (e === Errno.EINTR) return 0;
    throw new SysError("epoll_wait", e);
  }

  /**
   * wait() on a worker thread: the JS thread and Deno's event loop (timers,
   * promises, signals) run until events arrive. Resolves 0 on a failure,
   * which can only be EINTR here (errno of another thread is not readable).
   * No other wait may run until it resolves: both fill the same array.
   */
  async waitAsync(timeoutMs: number): Promise<number> {
    const n = await libc.epoll_wait_async(
      this.fd,
      this.#events,
      this.#max,
      timeoutMs,
    );
    return n > 0 ? n : 0;
  }

  /** The token of ready event `i` from the last wait(). */
  token(i: number): number {
    return this.#eventsView.getUint32(i * EVENT_SIZE + 4, true);
  }

  /** The event bits of ready event `i` from the last wait(). */
  events(i: number): number {
    return this.#eventsView.getUint32(i * EVENT_SIZE, true);
  }
}

/** POLLIN for pollReadable(). */
const POLLIN = 0x1;
const POLLOUT = 0x4;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const pollBuf = new Uint8Array(8);
const pollView = new DataView(pollBuf.buffer);

/** One poll(2) on `fd` for `events`; the revents (0 on timeout or EINTR). */
function pollOnce(fd: number, events: number, timeoutMs: number): number {
  pollView.setInt32(0, fd, true);
  pollView.setInt16(4, events, true);
  pollView.setInt16(6, 0, true);
  const n = libc.poll(pollBuf, 1n, timeoutMs);
  if (n === -1) {
    const e = errno();
    if (e === Errno.EINTR) return 0;
    throw new SysError("poll", e);
  }
  return n > 0 ? pollView.getInt16(6, true) : 0;
}

/**
 * Blocks this thread until `fd` is readable or `timeoutMs` passes (true:
 * readable); EINTR counts as not yet readable.
 */
export function waitReadable(fd: number, timeoutMs: number): boolean {
  return (pollOnce(fd, POLLIN, timeoutMs) & POLLIN) !== 0;
}

/**
 * Blocks this thread until `fd` can take a write or `timeoutMs` passes
 * (true: writable, or in error so that the write itself says why); EINTR
 * counts as not yet writable.
 */
export function waitWritable(fd: number, timeoutMs: number): boolean {
  return (pollOnce(fd, POLLOUT, timeoutMs) & (POLLOUT | POLLERR | POLLHUP)) !==
    0;
}

/**
 * Resolves when `fd` is readable or `timeoutMs` passes (true: readable).
 * Runs poll(2) on a worker thread so the JS thread stays free.
 */
export function pollReadable(fd: number, timeoutMs: number): Promise<boolean> {
  return pollAsync(fd, POLLIN, POLLIN, timeoutMs);
}

/**
 * Resolves when `fd` can take a write (or is in error, so that the write
 * says why) or `timeoutMs` passes; poll(2) on a worker thread.
 */
export function pollWritable(fd: number, timeoutMs: number): Promise<boolean> {
  return pollAsync(fd, POLLOUT, POLLOUT | POLLERR | POLLHUP, timeoutMs);
}

async function pollAsync(
  fd: number,
  events: number,
  ready: number,
  timeoutMs: number,
): Promise<boolean> {
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, events, true);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const left = timeoutMs < 0
      ? -1
      : Math.max(0, Math.ceil(deadline - performance.now()));
    const n = await libc.poll_async(pfd, 1n, left);
    if (n !== -1) return n > 0 && (v.getInt16(6, true) & ready) !== 0;
    // The errno is the worker thread's, out of reach from here; with one
    // valid pollfd poll fails only when a signal cuts it short, so wait
    // again for what is left.
    if (left === 0) return false;
  }
}

/**
 * Waits until `fd` is readable, then reads what it has into `buf`: the byte
 * count (0 at end of file), or null when `deadline` (a performance.now()
 * time) passed with nothing to read.
 */
export async function readBefore(
  fd: number,
  buf: Uint8Array,
  deadline: number,
): Promise<number | null> {
  const left = Math.max(0, Math.ceil(deadline - performance.now()));
  return await pollReadable(fd, left) ? readFd(fd, buf) : null;
}
