// The built-in device types, by the name `--device TYPE,...` uses: the one
// registry the CLI, the launcher and the remote consult.

import type { DeviceFactory } from "../device.ts";
import { createEdu } from "./edu.ts";
import { createTestDev } from "./testdev.ts";

/** Built-in device models by type name. */
export const BUILTIN_DEVICES: Readonly<Record<string, DeviceFactory>> = {
  testdev: createTestDev,
  edu: createEdu,
};

/** The built-in type names, for help texts and errors. */
export function builtinNames(): string {
  return Object.keys(BUILTIN_DEVICES).join(", ");
}
