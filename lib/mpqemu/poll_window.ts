// How long to busy-poll for the next message before sleeping, for the
// remote (the next request) and the proxy (the reply): adaptive as QEMU's
// iothreads do it (poll-max-ns, grown while polling would have caught the
// next event, shrunk when the peer went quiet).

/** Default upper bound of the polling window, in nanoseconds. */
export const DEFAULT_POLL_MAX_NS = 32_000;
// QEMU starts a growing window at 4 us and doubles it (poll-grow 2). A wait
// beyond the bound halves it (QEMU's poll-shrink 2) rather than dropping it
// (poll-shrink 0, QEMU's default), and only from the third such wait in a
// row: a wait is measured until the loop woke, and on a VM a wake-up alone
// costs 10-15 us, more at times, so a peer that answered just after the
// window, well within the bound, can look late. One late answer must not
// undo the window a busy peer has earned; a peer that stays quiet loses it
// within a few events. A peer that sends bursts keeps it: at most one
// window of polling per burst, which catches the burst's next requests.
const INITIAL_NS = 4_000;
const GROW = 2;
const SHRINK = 2;
const LATE_IN_A_ROW = 3;
// Below this a halved window is not worth a turn of polling.
const MIN_NS = 1_000;

/**
 * The busy-polling window. Adaptive by default; a fixed window (including
 * 0: never poll) when given one.
 */
export class PollWindow {
  #ns: number;
  readonly #maxNs: number;
  readonly #fixed: boolean;
  #lateInARow = 0;

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
   * bound three times in a row, halve it (to 0 once it is too small to
   * matter), so a peer that went quiet soon costs no polling at all.
   */
  update(waitedNs: number): void {
    if (this.#fixed) return;
    if (waitedNs > this.#maxNs) {
      if (++this.#lateInARow < LATE_IN_A_ROW) return;
      this.#ns = this.#ns / SHRINK < MIN_NS ? 0 : this.#ns / SHRINK;
      return;
    }
    this.#lateInARow = 0;
    if (waitedNs <= this.#ns) return;
    if (this.#ns < this.#maxNs) {
      this.#ns = Math.min(
        this.#maxNs,
        this.#ns === 0 ? INITIAL_NS : this.#ns * GROW,
      );
    }
  }
}
