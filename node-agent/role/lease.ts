// Lease arithmetic under bounded clock drift. Every clock (site or witness) runs at a rate within
// [1 - driftMax, 1 + driftMax] of real time. A holder measures a lease from when it SENT the
// request, so whatever the message delays, it stops before the grantor's lease can have ended.
//
// The grantor receives the request at real time T1 >= T0 (the send) and holds the lease for
// `leaseMs` on its own clock: at least leaseMs / (1 + driftMax) real ms from T1. The holder uses it
// for U ms on its clock from T0: at most U / (1 - driftMax) real ms. So U must satisfy
//   U / (1 - driftMax) < leaseMs / (1 + driftMax),  i.e.  U = leaseMs * (1 - d) / (1 + d) - margin.
// With driftMax 1% that is 98.0% of the lease, minus the safety margin.

export interface DriftBound {
  /** Maximum rate error of any clock, as a fraction (0.01 = 1%). */
  readonly driftMax: number;
  /** Subtracted on top of the drift allowance, for the processing time between check and act. */
  readonly safetyMarginMs: number;
}

/** Holder's clock: until when a lease granted for `leaseMs` on a request sent at `sentAtMs` may be used. */
export function usableUntilMs(sentAtMs: number, leaseMs: number, bound: DriftBound): number {
  const { driftMax, safetyMarginMs } = bound;
  return sentAtMs + (leaseMs * (1 - driftMax)) / (1 + driftMax) - safetyMarginMs;
}

/**
 * Observer's clock: the longest a lease granted at or before the observer's now, by any grantor to
 * any holder, can still be in use. The grantor holds it at most leaseMs / (1 - driftMax) real ms
 * from its grant, and the holder stops before the grantor's lease ends (above); the observer's clock
 * has covered that much real time once it has counted leaseMs * (1 + d) / (1 - d) of its own ms.
 * With driftMax 1% that is 102.0% of the lease, plus the safety margin.
 */
export function heldAtMostMs(leaseMs: number, bound: DriftBound): number {
  const { driftMax, safetyMarginMs } = bound;
  return (leaseMs * (1 + driftMax)) / (1 - driftMax) + safetyMarginMs;
}
