// A bounded cache for pure, expensive planner functions whose results callers only read.

/** `compute` remembered by `keyOf` of its argument; the whole cache is dropped once it holds `max`. */
export function memoize<A, R>(compute: (arg: A) => R, keyOf: (arg: A) => string, max: number): (arg: A) => R {
  const known = new Map<string, R>();
  return (arg) => {
    const key = keyOf(arg);
    let result = known.get(key);
    if (result === undefined) {
      if (known.size >= max) known.clear();
      known.set(key, (result = compute(arg)));
    }
    return result;
  };
}
