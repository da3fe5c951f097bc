// Reads the machine-readable line a guest writes to its serial console:
// `IOHUB-RESULT key=value ...`.

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
