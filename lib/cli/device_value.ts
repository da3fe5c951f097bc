// A `--device` value checked for `remote` and `launch`: the grammar
// (lib/pci/devices/options.ts) with each command's own keys, and a device
// module's own options (ctx.params), as one usage error line when wrong.

import { isModuleType } from "../pci/devices/load.ts";
import {
  isParamKey,
  noParams,
  splitDeviceValue,
} from "../pci/devices/options.ts";
import { UsageError } from "./common.ts";

/** A `--device` value taken apart. */
export interface DeviceValue {
  /** The device type: a built-in name, or a module path or URL. */
  type: string;
  /** The command's own options given, by key. */
  own: Map<string, string>;
  /** A device module's own options (ctx.params). */
  params: Record<string, string>;
}

/**
 * Takes `--device TYPE,KEY=VALUE,...` apart (splitDeviceValue). `own`
 * maps each of the command's keys to the check of its value, and
 * `expected` describes them for the error. Throws UsageError naming the
 * value for a missing type, a key given twice, or an option that is
 * neither the command's (with a valid value) nor a module's own.
 */
export function parseDeviceValue(
  value: string,
  own: Readonly<Record<string, (v: string) => boolean>>,
  expected: string,
): DeviceValue {
  const { type, options } = splitDeviceValue(value);
  if (type === "") {
    throw new UsageError(`--device ${value}: missing the device type`);
  }
  const result: DeviceValue = { type, own: new Map(), params: noParams() };
  const seen = new Set<string>();
  for (const opt of options) {
    const eq = opt.indexOf("=");
    const key = eq < 0 ? opt : opt.slice(0, eq);
    const val = opt.slice(eq + 1);
    if (seen.has(key)) {
      throw new UsageError(`--device ${value}: option '${key}' given twice`);
    }
    seen.add(key);
    if (eq > 0 && Object.hasOwn(own, key) && own[key](val)) {
      result.own.set(key, val);
    } else if (eq > 0 && !Object.hasOwn(own, key) && isParamKey(type, key)) {
      result.params[key] = val;
    } else {
      throw new UsageError(
        `--device ${value}: bad option '${opt}' (expected ${expected}${
          isModuleType(type) ? "; or KEY=VALUE for the module" : ""
        })`,
      );
    }
  }
  return result;
}
