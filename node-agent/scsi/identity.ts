// A volume's SCSI identity, derived only from its names so both sites compute the same one: the
// NAA IEEE Registered Extended designator (SPC-4 7.8.6.6.5) for VPD page 0x83 and the unit serial
// number for VPD page 0x80. Pure.
import { createHash } from 'node:crypto';

export interface VolumeIdentity {
  /** 16-byte NAA type 6 designator. */
  readonly naa: Buffer;
  /** Unit serial number (VPD 0x80), printable ASCII. */
  readonly serial: string;
}

/**
 * The 24-bit company identifier field of our NAA designators. Not an IEEE assignment: its low
 * nibble 0xA marks a CID-format, locally administered value, so it cannot collide with a vendor OUI.
 */
export const metroCompanyId = 0x5a4d4a;

export function volumeIdentity(names: { cluster: string; group: string; volume: string }): VolumeIdentity {
  // NUL separators keep ("a","bc") and ("ab","c") apart.
  const hash = createHash('sha256')
    .update(`metrocluster-volume\0${names.cluster}\0${names.group}\0${names.volume}`)
    .digest();
  const naa = Buffer.alloc(16);
  naa[0] = 0x60 | ((metroCompanyId >> 20) & 0x0f); // NAA = 6
  naa[1] = (metroCompanyId >> 12) & 0xff;
  naa[2] = (metroCompanyId >> 4) & 0xff;
  naa[3] = ((metroCompanyId & 0x0f) << 4) | (hash[0] & 0x0f); // VENDOR SPECIFIC IDENTIFIER: 36 bits
  hash.copy(naa, 4, 1, 13); // 32 more VSID bits, then the 64-bit VENDOR SPECIFIC IDENTIFIER EXTENSION
  const serial = hash.subarray(13, 25).toString('hex').toUpperCase();
  return { naa, serial };
}
