// Which ALUA state each site's port group of a group is in, as this site reports it (DESIGN.md, ALUA
// table). Pure: the facts in, the states out. At the primary: itself active/optimized, a secondary
// active/non-optimized while it is up-to-date, unavailable while outdated. (Whether the secondary's
// link is up does not enter: a host using the secondary's portal then hears the secondary itself,
// and hosts on the primary are not sent a unit attention for every reconnection.) At a secondary that
// cannot reach the primary: itself transitioning while the link is being re-established, unavailable
// once that takes longer than the transition bound.
import type { AluaState } from '../scsi/alua.ts';

export interface GroupFacts {
  /** This site's name. */
  readonly self: string;
  /** The sites of the topology, in order. */
  readonly sites: readonly string[];
  /** The group's primary now (undefined: none known). */
  readonly primary: string | undefined;
  /** This site is fenced for the group: it neither executes nor forwards. */
  readonly fenced: boolean;
  /** At the primary: the secondary is up-to-date (the mirror session's record). */
  readonly peerUpToDate: boolean;
  /** At a secondary: the forward link to the primary. */
  readonly link: 'attached' | 'connecting' | 'lost';
}

export function aluaStates(f: GroupFacts): Map<string, AluaState> {
  const states = new Map<string, AluaState>();
  for (const site of f.sites) states.set(site, stateOf(f, site));
  return states;
}

function stateOf(f: GroupFacts, site: string): AluaState {
  if (site === f.self && f.fenced) return 'unavailable';
  if (f.primary === undefined) return 'transitioning'; // a promotion or switchover is under way
  if (site === f.primary) return 'active-optimized';
  if (f.self === f.primary) return f.peerUpToDate ? 'active-non-optimized' : 'unavailable';
  if (site !== f.self) return 'unavailable';
  switch (f.link) {
    case 'attached': return 'active-non-optimized';
    case 'connecting': return 'transitioning';
    case 'lost': return 'unavailable';
  }
}
