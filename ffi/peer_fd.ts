// Closing an fd a peer sent. close(2) can wait on the peer, uninterruptibly
// and for as long as it likes: the last close of a FUSE file sends its
// daemon a FLUSH, a TCP socket with SO_LINGER waits for its queue to drain,
// and closing an eventfd or a pipe takes locks a peer's stuck thread may
// hold; a UNIX socket's queue may carry any of these as SCM_RIGHTS. No kind
// of fd is safe, so once a PeerFdCloser runs, every peer fd is closed on
// threads of its own: a close that never returns holds only its thread, and
// the closes behind it go to another.

import { closeFd } from "./fd.ts";
import { jsWorker } from "./js_worker.ts";
import { libc, LIBC_NAME } from "./libc.ts";

// The shared ring: [0] next entry to claim, [1] next entry to fill, then
// RING_SLOTS entries of two words, the fd and whose it was (its owner, see
// asPeerFdOwner). Each thread also has a status word: 0 idle, else when its
// current close began (ms since the closer started, never 0), and the owner
// of that close; and each owner a count of its closes done.
const RING_SLOTS = 4096;
const HEAD = 0;
const TAIL = 1;
const SLOTS_AT = 2;
/** Owners closePeerFd can tell apart: 0 (nobody in particular) and up. */
export const MAX_PEER_FD_OWNERS = 1024;
// A close taking longer than this is taken for stuck: the closes behind it
// go to a new thread, up to MAX_THREADS of them. Short, because the fds
// queued behind a stuck close wait that long for the next thread; a wrong
// guess costs a thread, no more.
/** How long a close lasts before it counts as stuck (waiting on a peer). */
export const PEER_CLOSE_STUCK_MS = 200;
const MAX_THREADS = 16;
/**
 * Closes of one owner's fds that may be stuck at once; that owner's later
 * fds are left open (see PeerFdCloser.dropped) while they are.
 */
export const OWNER_STUCK_LIMIT = 2;

// How many of `owner`'s closes have lasted `stuckMs` by `now` (ms since
// the closer started), from the threads' status words and the owners of
// their closes. The closers' code runs it too (as its source): it names
// nothing outside itself.
function stuckCloses(
  status: Int32Array,
  closing: Int32Array,
  owner: number,
  now: number,
  stuckMs: number,
): number {
  let n = 0;
  for (let i = 0; i < status.length; i++) {
    const since = Atomics.load(status, i);
    if (
      since !== 0 && ((now - since) | 0) >= stuckMs &&
      Atomics.load(closing, i) === owner
    ) {
      n++;
    }
  }
  return n;
}

// The closers' code (see js_worker.ts). Each claims entries of the ring
// one at a time and waits on the ring's tail when it is empty.
const CLOSER_JS = `
const stuckCloses = ${stuckCloses.toString()};
self.onmessage = ({ data }) => {
  const close = Deno.dlopen(data.libc, {
    close: { parameters: ["i32"], result: "i32" },
  }).symbols.close;
  const ring = new Int32Array(data.ring);
  const status = new Int32Array(data.status);
  const done = new Int32Array(data.done);
  const closing = new Int32Array(data.closing);
  const left = new Int32Array(data.left);
  self.postMessage("ready");
  for (;;) {
    const head = Atomics.load(ring, ${HEAD});
    const tail = Atomics.load(ring, ${TAIL});
    if (head === tail) {
      Atomics.wait(ring, ${TAIL}, tail);
      continue;
    }
    // Read before claiming: once claimed, the slot may be filled anew.
    const at = ${SLOTS_AT} + 2 * (head % ${RING_SLOTS});
    const fd = Atomics.load(ring, at);
    const owner = Atomics.load(ring, at + 1);
    if (Atomics.compareExchange(ring, ${HEAD}, head, head + 1) !== head) continue;
    if (fd < 0) {
      self.close();
      return;
    }
    // An owner with ${OWNER_STUCK_LIMIT} closes stuck gets no more threads: its
    // fd is left open (counted), or one peer could take every thread.
    const now = (Date.now() - data.base) | 0;
    const stuck = stuckCloses(status, closing, owner, now, ${PEER_CLOSE_STUCK_MS});
    if (stuck >= ${OWNER_STUCK_LIMIT}) {
      Atomics.add(left, 0, 1);
      Atomics.add(done, owner, 1);
      continue;
    }
    Atomics.store(closing, data.index, owner);
    Atomics.store(status, data.index, ((Date.now() - data.base) | 0) || 1);
    close(fd);
    Atomics.add(done, owner, 1);
    Atomics.store(status, data.index, 0);
  }
};
`;

let current: PeerFdCloser | null = null;
let owner = 0;

/**
 * Runs `fn` with `id` (0 to MAX_PEER_FD_OWNERS - 1) as the owner of the
 * peer fds it closes, and returns what it returns. The remote names the
 * channel it serves, so that a peer whose fds' closes wait on it
 * (peerFdsStuck) or that sends fds faster than they close (peerFdsPending)
 * can be told from the others.
 */
export function asPeerFdOwner<T>(id: number, fn: () => T): T {
  const before = owner;
  owner = id;
  try {
    return fn();
  } finally {
    owner = before;
  }
}

/**
 * Closes of `id`'s fds asked for and not done yet (stuck ones included, and
 * ones waiting behind other owners' stuck closes); 0 when no closer runs.
 */
export function peerFdsPending(id: number): number {
  return current === null ? 0 : current.pendingOf(id);
}

/**
 * Closes of `id`'s fds that a thread has been inside for PEER_CLOSE_STUCK_MS
 * or more: each waits on whoever holds that fd's other end, that peer alone.
 */
export function peerFdsStuck(id: number): number {
  return current === null ? 0 : current.stuckOf(id);
}

const SHUT_RDWR = 2;

/**
 * Ends both directions of socket `fd` at once, then closes it as a peer
 * fd: its peer sees EOF now, however long the close itself waits (a close
 * releases what the socket's queue holds, a shutdown does not). Anything
 * but a connected socket is just closed.
 */
export function closePeerSocket(fd: number): void {
  libc.shutdown(fd, SHUT_RDWR);
  closePeerFd(fd);
}

/**
 * Closes `fd`, received from a peer: on the running PeerFdCloser's threads,
 * or here when none runs (before a remote serves, and in the proxy, whose
 * peer is a remote it started or chose).
 */
export function closePeerFd(fd: number): void {
  if (current === null) closeFd(fd);
  else current.close(fd);
}

/**
 * Threads of their own that close peer fds (see above), installed for
 * closePeerFd() while it lives. Start it after --sandbox, so that its
 * threads are confined too.
 */
export class PeerFdCloser implements Disposable {
  readonly #ring = new Int32Array(
    new SharedArrayBuffer(4 * (SLOTS_AT + 2 * RING_SLOTS)),
  );
  readonly #status = new Int32Array(new SharedArrayBuffer(4 * MAX_THREADS));
  readonly #closing = new Int32Array(new SharedArrayBuffer(4 * MAX_THREADS));
  readonly #left = new Int32Array(new SharedArrayBuffer(4));
  readonly #done = new Int32Array(
    new SharedArrayBuffer(4 * MAX_PEER_FD_OWNERS),
  );
  readonly #queued = new Int32Array(MAX_PEER_FD_OWNERS);
  readonly #workers: Worker[] = [];
  readonly #base = Date.now();
  #dropped = 0;
  #check: ReturnType<typeof setTimeout> | undefined;

  /** Starts the first thread and installs the closer once it runs. */
  static async start(): Promise<PeerFdCloser> {
    const closer = new PeerFdCloser();
    await closer.#spawn();
    current = closer;
    return closer;
  }

  private constructor() {}

  #spawn(): Promise<void> {
    const index = this.#workers.length;
    const worker = jsWorker(CLOSER_JS);
    this.#workers.push(worker);
    const ready = new Promise<void>((done, failed) => {
      worker.onmessage = () => done();
      worker.onerror = (e) => {
        e.preventDefault();
        failed(new Error(`an fd closer thread stopped: ${e.message}`));
      };
    });
    worker.postMessage({
      libc: LIBC_NAME,
      ring: this.#ring.buffer,
      status: this.#status.buffer,
      done: this.#done.buffer,
      closing: this.#closing.buffer,
      left: this.#left.buffer,
      index,
      base: this.#base,
    });
    return ready;
  }

  /** Closes asked for and not done (stuck ones included). */
  get pending(): number {
    const busy = this.#status.filter((s) => s !== 0).length;
    return Atomics.load(this.#ring, TAIL) - Atomics.load(this.#ring, HEAD) +
      busy;
  }

  /** Closes of owner `id`'s fds asked for and not done (see asPeerFdOwner). */
  pendingOf(id: number): number {
    // Both counts wrap alike past 2^31.
    return (this.#queued[id] - Atomics.load(this.#done, id)) | 0;
  }

  /** Closes of owner `id`'s fds in progress PEER_CLOSE_STUCK_MS or more. */
  stuckOf(id: number): number {
    const now = (Date.now() - this.#base) | 0;
    return stuckCloses(
      this.#status,
      this.#closing,
      id,
      now,
      PEER_CLOSE_STUCK_MS,
    );
  }

  /**
   * Fds left open: every thread was stuck and the ring full, or their
   * owner had OWNER_STUCK_LIMIT closes stuck.
   */
  get dropped(): number {
    return this.#dropped + Atomics.load(this.#left, 0);
  }

  /** Queues `fd` to be closed. */
  close(fd: number): void {
    // First: with the ring full, a new thread is what empties it.
    this.#replaceStuck();
    const ring = this.#ring;
    const tail = Atomics.load(ring, TAIL);
    if (tail - Atomics.load(ring, HEAD) >= RING_SLOTS) {
      // Better an fd left open than a serving thread stuck in close(2).
      this.#dropped++;
      return;
    }
    const at = SLOTS_AT + 2 * (tail % RING_SLOTS);
    Atomics.store(ring, at, fd);
    Atomics.store(ring, at + 1, owner);
    this.#queued[owner]++;
    Atomics.store(ring, TAIL, tail + 1);
    Atomics.notify(ring, TAIL, 1);
    this.#checkLater();
  }

  // The fds behind a close that gets stuck wait for a new thread, which a
  // later close() would start: while the ring holds any, a timer looks too.
  #checkLater(): void {
    if (this.#check !== undefined) return;
    this.#check = setTimeout(() => {
      this.#check = undefined;
      this.#replaceStuck();
      const ring = this.#ring;
      if (Atomics.load(ring, TAIL) !== Atomics.load(ring, HEAD)) {
        this.#checkLater();
      }
    }, PEER_CLOSE_STUCK_MS);
    Deno.unrefTimer(this.#check);
  }

  // When every thread is inside a close that has lasted PEER_CLOSE_STUCK_MS,
  // one more takes the ring (up to MAX_THREADS).
  #replaceStuck(): void {
    const now = (Date.now() - this.#base) | 0;
    for (let i = 0; i < this.#workers.length; i++) {
      const since = Atomics.load(this.#status, i);
      if (since === 0 || ((now - since) | 0) < PEER_CLOSE_STUCK_MS) return;
    }
    if (this.#workers.length >= MAX_THREADS) return;
    // Its start is not awaited: the ring keeps the fds until it runs.
    this.#spawn().catch(() => {});
  }

  /**
   * Uninstalls it; each thread ends once the ring is empty (a stuck close
   * holds its thread for ever, so none is waited for).
   */
  [Symbol.dispose](): void {
    if (current === this) current = null;
    clearTimeout(this.#check);
    const ring = this.#ring;
    for (let i = 0; i < this.#workers.length; i++) {
      const tail = Atomics.load(ring, TAIL);
      Atomics.store(ring, SLOTS_AT + 2 * (tail % RING_SLOTS), -1);
      Atomics.store(ring, TAIL, tail + 1);
    }
    Atomics.notify(ring, TAIL);
  }
}
