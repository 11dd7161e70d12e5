// INQUIRY data (SPC-4 6.6) and the vital product data pages this disk serves (SPC-4 7.8, SBC-3
// 6.5): pure builders from the logical unit's geometry and identity and the target port's names.
// Callers truncate to the allocation length.
import { atomicMaxBlocks, compareAndWriteMaxBlocks, unmapDescriptorsMax, unmapGranularityBlocks, unmapMaxBlocks, writeSameMaxBlocks } from './block-limits.ts';
import type { LogicalUnit, TargetContext, TargetPort } from './command-table.ts';

/** Peripheral qualifier 0, device type 0 (direct access block device). */
const diskPeripheral = 0x00;
/** Peripheral qualifier 3, device type 0x1F: no logical unit at this LUN (SPC-4 6.6.2). */
export const missingLunPeripheral = 0x7f;

/** Version descriptors claimed (SPC-4 table 150, "no version claimed" codes). */
const versionDescriptors = [
  0x00a0, // SAM-5
  0x0960, // iSCSI
  0x0460, // SPC-4
  0x04c0, // SBC-3
];

const standardInquiryBytes = 96;

function ascii(buf: Buffer, offset: number, width: number, text: string): void {
  // SPC-4 4.4.1: printable ASCII, left-aligned, space padded.
  const clean = text.replace(/[^\x20-\x7e]/g, '?').slice(0, width).padEnd(width, ' ');
  buf.write(clean, offset, width, 'latin1');
}

export function standardInquiry(target: TargetContext, lunExists: boolean): Buffer {
  const buf = Buffer.alloc(standardInquiryBytes);
  buf[0] = lunExists ? diskPeripheral : missingLunPeripheral;
  buf[2] = 0x06; // VERSION: SPC-4
  buf[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2
  buf[4] = standardInquiryBytes - 5; // ADDITIONAL LENGTH
  buf[5] = 0x10; // TPGS 01b: implicit ALUA, REPORT TARGET PORT GROUPS (SPC-4 5.15)
  buf[6] = 0x10; // MULTIP: the same logical unit is reachable through each site's target port
  buf[7] = 0x02; // CMDQUE
  ascii(buf, 8, 8, target.vendor);
  ascii(buf, 16, 16, target.product);
  ascii(buf, 32, 4, target.revision);
  versionDescriptors.forEach((code, i) => buf.writeUInt16BE(code, 58 + 2 * i));
  return buf;
}

/** VPD pages served, ascending (SPC-4 7.8.13 requires the list sorted). */
export const supportedVpdPages = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2] as const;

function vpdPage(pageCode: number, body: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header[0] = diskPeripheral;
  header[1] = pageCode;
  header.writeUInt16BE(body.length, 2);
  return Buffer.concat([header, body]);
}

/** One designation descriptor (SPC-4 7.8.6.1). */
function designator(opts: {
  codeSet: number;
  association: number;
  type: number;
  /** iSCSI protocol identifier (5) with PIV set, for target port and target device designators. */
  iscsi: boolean;
  value: Buffer;
}): Buffer {
  const head = Buffer.alloc(4);
  head[0] = ((opts.iscsi ? 0x5 : 0) << 4) | opts.codeSet;
  head[1] = (opts.iscsi ? 0x80 : 0) | (opts.association << 4) | opts.type;
  head[3] = opts.value.length;
  return Buffer.concat([head, opts.value]);
}

/** SCSI name string: UTF-8, NUL terminated, padded with NULs to a multiple of four (SPC-4 7.8.6.11). */
function scsiNameString(name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  const padded = Buffer.alloc((bytes.length + 4) & ~3);
  bytes.copy(padded);
  return padded;
}

const CodeSet = { binary: 1, ascii: 2, utf8: 3 } as const;
const Association = { logicalUnit: 0, targetPort: 1, targetDevice: 2 } as const;
const DesignatorType = { naa: 3, relativeTargetPort: 4, targetPortGroup: 5, scsiName: 8 } as const;

function u16Field(value: number): Buffer {
  // Relative target port and target port group designators: 2 reserved bytes, then the number.
  const b = Buffer.alloc(4);
  b.writeUInt16BE(value, 2);
  return b;
}

/** `port`: the target port the command came in through (each site is its own, DESIGN.md). */
export function deviceIdentificationPage(lu: LogicalUnit, target: TargetContext, port: TargetPort): Buffer {
  const descriptors = [
    designator({ codeSet: CodeSet.binary, association: Association.logicalUnit, type: DesignatorType.naa, iscsi: false, value: lu.identity.naa }),
    designator({
      codeSet: CodeSet.binary,
      association: Association.targetPort,
      type: DesignatorType.relativeTargetPort,
      iscsi: true,
      value: u16Field(port.relativeTargetPortId),
    }),
    designator({
      codeSet: CodeSet.binary,
      association: Association.targetPort,
      type: DesignatorType.targetPortGroup,
      iscsi: true,
      value: u16Field(port.targetPortGroupId),
    }),
    designator({
      codeSet: CodeSet.utf8,
      association: Association.targetPort,
      type: DesignatorType.scsiName,
      iscsi: true,
      value: scsiNameString(port.targetPortName),
    }),
    designator({
      codeSet: CodeSet.utf8,
      association: Association.targetDevice,
      type: DesignatorType.scsiName,
      iscsi: true,
      value: scsiNameString(target.iqn),
    }),
  ];
  return vpdPage(0x83, Buffer.concat(descriptors));
}

export function supportedPagesPage(): Buffer {
  return vpdPage(0x00, Buffer.from(supportedVpdPages));
}

export function unitSerialPage(lu: LogicalUnit): Buffer {
  return vpdPage(0x80, Buffer.from(lu.identity.serial, 'latin1'));
}

/**
 * SBC-4 6.6.4, limits from block-limits.ts. WSNZ 0: WRITE SAME with length 0 runs to the last LBA.
 * UGAVALID 1 with UNMAP GRANULARITY ALIGNMENT 0: UNMAP takes any range, but whole 4 KiB filesystem
 * blocks from LBA 0 on are what give space back. No atomic boundaries (WRITE ATOMIC(16) with a
 * nonzero ATOMIC BOUNDARY is refused), so the last two fields stay 0.
 */
export function blockLimitsPage(lu: LogicalUnit): Buffer {
  const body = Buffer.alloc(0x3c);
  // body offsets are page offsets - 4
  body[1] = compareAndWriteMaxBlocks; // MAXIMUM COMPARE AND WRITE LENGTH
  body.writeUInt16BE(lu.granularityBlocks, 2); // OPTIMAL TRANSFER LENGTH GRANULARITY
  body.writeUInt32BE(lu.transferMaxBlocks, 4); // MAXIMUM TRANSFER LENGTH
  body.writeUInt32BE(unmapMaxBlocks(lu), 16); // MAXIMUM UNMAP LBA COUNT
  body.writeUInt32BE(unmapDescriptorsMax, 20); // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
  body.writeUInt32BE(unmapGranularityBlocks(lu), 24); // OPTIMAL UNMAP GRANULARITY
  body.writeUInt32BE(0x80000000, 28); // UGAVALID, UNMAP GRANULARITY ALIGNMENT 0
  body.writeBigUInt64BE(BigInt(writeSameMaxBlocks(lu)), 32); // MAXIMUM WRITE SAME LENGTH
  body.writeUInt32BE(atomicMaxBlocks(lu), 40); // MAXIMUM ATOMIC TRANSFER LENGTH
  // ATOMIC ALIGNMENT (44) and ATOMIC TRANSFER LENGTH GRANULARITY (48) 0: no restriction.
  return vpdPage(0xb0, body);
}

/** SBC-3 6.5.2: MEDIUM ROTATION RATE 1 = non-rotating (solid state). */
export function blockDeviceCharacteristicsPage(): Buffer {
  const body = Buffer.alloc(0x3c);
  body.writeUInt16BE(0x0001, 0);
  return vpdPage(0xb1, body);
}

/**
 * SBC-4 6.6.6, matching thin-provisioning.ts: UNMAP (LBPU), WRITE SAME(16) and (10) with UNMAP
 * (LBPWS, LBPWS10), deallocated blocks read zeros (LBPRZ), no anchoring (ANC_SUP 0), provisioning
 * type thin, no threshold (exponent 0).
 */
export function logicalBlockProvisioningPage(): Buffer {
  return vpdPage(0xb2, Buffer.from([0x00, 0x80 | 0x40 | 0x20 | 0x04, 0x02, 0x00]));
}

/** The VPD page for a page code, or undefined if it is not served. */
export function vpdPageFor(pageCode: number, lu: LogicalUnit, target: TargetContext, port: TargetPort): Buffer | undefined {
  switch (pageCode) {
    case 0x00:
      return supportedPagesPage();
    case 0x80:
      return unitSerialPage(lu);
    case 0x83:
      return deviceIdentificationPage(lu, target, port);
    case 0xb0:
      return blockLimitsPage(lu);
    case 0xb1:
      return blockDeviceCharacteristicsPage();
    case 0xb2:
      return logicalBlockProvisioningPage();
    default:
      return undefined;
  }
}
