// Invariant checks: a failed assert is a bug, so it throws loudly (STYLE.md: three kinds of error).
export class AssertionFailed extends Error {
  override name = 'AssertionFailed';
}

export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new AssertionFailed(message);
}
