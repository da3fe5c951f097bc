// How long the remote busy-polls for the next message before it sleeps:
// adaptive as QEMU's iothreads do it (poll-max-ns, grown while polling
// would have caught the next event, dropped when the peer went quiet).

/** Default upper bound of the polling window, in nanoseconds. */
export const DEFAULT_POLL_MAX_NS = 32_000;
// QEMU starts a growing window at 4 us and doubles it.
const INITIAL_NS = 4_000;
const GROW = 2;

/**
 * The busy-polling window. Adaptive by default; a fixed window (including
 * 0: never poll) when given one.
 */
export class PollWindow {
  #ns: number;
  readonly #maxNs: number;
  readonly #fixed: boolean;

  /** An adaptive window up to `maxNs`, or a fixed one of `fixedNs`. */
  constructor(options: { maxNs?: number; fixedNs?: number } = {}) {
    this.#fixed = options.fixedNs !== undefined;
    this.#maxNs = options.fixedNs ?? options.maxNs ?? DEFAULT_POLL_MAX_NS;
    this.#ns = options.fixedNs ?? 0;
  }

  /** The current window in nanoseconds (0: sleep at once). */
  get ns(): number {
    return this.#ns;
  }

  /**
   * Adapts the window to how long the loop waited for its last event,
   * counted from the start of polling: caught while polling, keep it;
   * would have been caught by a longer window, grow it; longer than the
   * bound, stop polling until the peer is busy again.
   */
  update(waitedNs: number): void {
    if (this.#fixed || waitedNs <= this.#ns) return;
    if (waitedNs > this.#maxNs) {
      this.#ns = 0;
    } else if (this.#ns < this.#maxNs) {
      this.#ns = Math.min(
        this.#maxNs,
        this.#ns === 0 ? INITIAL_NS : this.#ns * GROW,
      );
    }
  }
}
