// Reads the two machine-readable lines a demo run produces: the boot
// guest's `IOHUB-RESULT key=value ...` serial line and the remote's
// per-device close line with its IOHUB counters.

/** The boot guest's result line as key -> value (all strings). */
export type GuestResult = Record<string, string>;

const RESULT_PREFIX = "IOHUB-RESULT ";

/** Parses an `IOHUB-RESULT k=v k=v` line; null for any other line. */
export function parseGuestResult(line: string): GuestResult | null {
  const at = line.indexOf(RESULT_PREFIX);
  if (at < 0) return null;
  const out: GuestResult = {};
  for (
    const field of line.slice(at + RESULT_PREFIX.length).trim().split(/\s+/)
  ) {
    const eq = field.indexOf("=");
    if (eq > 0) out[field.slice(0, eq)] = field.slice(eq + 1);
  }
  return out;
}

/** INTx counters the remote logs when a device's channel closes. */
export interface IntxCounters {
  /** Device id. */
  id: string;
  /** 0 -> 1 level edges written to the irqfd. */
  asserts: number;
  /** Deassertions counted. */
  deasserts: number;
  /** Resamples (guest EOIs) seen. */
  resamples: number;
  /** Re-assertions made on resample because the level stayed high. */
  reasserts: number;
}

// The cause may itself contain ": ", so the id is taken from the start.
const CLOSE_LINE =
  /^(?:iohub remote: )?([\w.-]+): .*; INTx asserts=(\d+) deasserts=(\d+) resamples=(\d+) reasserts=(\d+)/;

/** Parses a remote close line; null for any other line. */
export function parseIntxCounters(line: string): IntxCounters | null {
  const m = CLOSE_LINE.exec(line);
  if (m === null) return null;
  return {
    id: m[1],
    asserts: Number(m[2]),
    deasserts: Number(m[3]),
    resamples: Number(m[4]),
    reasserts: Number(m[5]),
  };
}
