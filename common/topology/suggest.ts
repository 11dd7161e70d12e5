// Did-you-mean for misspelt keys and enum values: the closest candidate by edit distance, when it is
// close enough to be what the admin meant. Pure.
import { distance } from 'fastest-levenshtein';

export function closest(found: string, candidates: readonly string[]): string | undefined {
  const lower = found.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const c = candidate.toLowerCase();
    if (c === lower) return candidate;
    const d = distance(lower, c);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  if (best === undefined) return undefined;
  const limit = Math.max(2, Math.floor(Math.max(found.length, best.length) / 3));
  if (bestDistance <= limit) return best;
  // "synchronous" for "sync", "asynchronous" for "async": a prefix is a strong hint too.
  const prefixed = candidates
    .filter((c) => c.length >= 3 && lower.startsWith(c.toLowerCase()))
    .sort((a, b) => b.length - a.length)[0];
  return prefixed;
}

export function didYouMean(found: string, candidates: readonly string[]): string {
  const c = closest(found, candidates);
  return c === undefined ? '' : `; did you mean "${c}"?`;
}
