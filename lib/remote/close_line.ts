// The line the remote logs when a device's channel closes: why, and the
// device's IOHUB counters. Formatted and parsed here only, so the demo and
// tests read exactly what the remote writes.

import type { PirqCounters } from "./iohub.ts";

/** What a close line carries besides its free-text cause. */
export interface ClosedDevice {
  /** Device id. */
  id: string;
  /** The device's INTx counters in the IOHUB. */
  counters: PirqCounters;
  /** Accesses refused since the channel opened. */
  refusals: number;
}

/** The close line for `device`, closed because of `why`. */
export function formatCloseLine(device: ClosedDevice, why: string): string {
  const c = device.counters;
  return `${device.id}: ${why}; INTx asserts=${c.asserts} deasserts=${c.deasserts} resamples=${c.resamples} reasserts=${c.reasserts}; refused accesses=${device.refusals}`;
}

// The cause may itself contain ": " and newlines (a device's stack), so the
// id is taken from the start and the counters from the end.
const CLOSE_LINE =
  /^(?:iohub remote: )?([\w.-]+): [\s\S]*; INTx asserts=(\d+) deasserts=(\d+) resamples=(\d+) reasserts=(\d+); refused accesses=(\d+)$/;

/** Parses a close line (with or without the log prefix); null for others. */
export function parseCloseLine(line: string): ClosedDevice | null {
  const m = CLOSE_LINE.exec(line.trimEnd());
  if (m === null) return null;
  return {
    id: m[1],
    counters: {
      asserts: Number(m[2]),
      deasserts: Number(m[3]),
      resamples: Number(m[4]),
      reasserts: Number(m[5]),
    },
    refusals: Number(m[6]),
  };
}
