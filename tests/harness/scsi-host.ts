// A host's SCSI view of a test cluster through the test initiator: sessions at a site's portal as
// one initiator port, PERSISTENT RESERVE OUT parameter lists, sense decoding, and waiting until the
// secondary's portal forwards a group's commands to its primary.
import type { TestCluster } from './cluster.ts';
import { cdb } from './fuzz.ts';
import { TestSession } from './initiator.ts';

export const TUR = cdb([0x00]);

/** Sense key, ASC and ASCQ of a fixed-format sense buffer (SPC-4 4.5.3). */
export const sense = (r: { sense: Buffer }): [number, number, number] => [r.sense[2] & 0x0f, r.sense[12], r.sense[13]];

/** PERSISTENT RESERVE OUT (SPC-4 6.16) with its 24-byte basic parameter list. */
export function prout(action: number, o: { key?: bigint; sak?: bigint; type?: number; aptpl?: boolean }): { cdb: Buffer; data: Buffer } {
  const data = Buffer.alloc(24);
  data.writeBigUInt64BE(o.key ?? 0n, 0);
  data.writeBigUInt64BE(o.sak ?? 0n, 8);
  data[20] = o.aptpl ? 1 : 0;
  return { cdb: cdb([0x5f, action, o.type ?? 0, 0, 0, 0, 0, 0, 24, 0]), data };
}

/** A session of host `who` (iqn.2026-11.org.example:<who>) at a site's portal, for one group. */
export async function open(c: TestCluster, site: 1 | 2, who: string, group = 'db'): Promise<TestSession> {
  const [host, port] = c.portal(site).split(':');
  // A fixed ISID, as a host's iSCSI interface keeps: the same initiator port after a reconnect.
  const isid = Buffer.from([0x80, 0x12, 0x34, 0x56, 0x00, who.length]);
  return TestSession.open({ host, port: Number(port), initiatorName: `iqn.2026-11.org.example:${who}`, targetName: c.iqn(group), isid });
}

/** Waits until the secondary's portal forwards the group's commands (TEST UNIT READY turns GOOD):
 *  its port group's state changes (and their unit attentions) are then behind us. */
export async function waitForwarding(c: TestCluster, group: string): Promise<void> {
  const s = await open(c, 2, 'link-up', group);
  try {
    for (const until = performance.now() + 60_000; performance.now() < until;) {
      if ((await s.command(0, TUR)).status === 0) return;
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new Error(`the secondary never forwarded group ${group}`);
  } finally {
    s.destroy();
  }
}
