// Reads the topology's access rules for the iSCSI portal: the initiator allow-list and the CHAP
// secrets (common/chap/chap-secrets.ts: the rules the witness's drill probe reads them under too).
// A secret file readable by group or others is refused; a secret never reaches a log line.
import type { Topology } from '../common/topology/index.ts';
import { readChapSecrets, type ChapSecrets } from '../common/chap/chap-secrets.ts';

export interface PortalAccess {
  initiators: string[];
  chap?: ChapSecrets;
}

export async function readAccess(t: Topology): Promise<PortalAccess> {
  const chap = t.access.chap;
  if (!chap) return { initiators: t.access.initiators };
  return { initiators: t.access.initiators, chap: await readChapSecrets(chap) };
}
