// Opens the site's volume files: one sparse file per volume under <dataDir>/volumes/<group>/,
// created on first start and recorded in the metadata with the volume's identity (the NAA
// designator both sites present). A file larger than its volume is refused, never shrunk.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Group, Site, Topology, Volume } from '../common/topology/index.ts';
import type { Logger } from '../common/log.ts';
import { DaemonError } from '../common/daemon.ts';
import type { BlockDevice } from './storage/block-device.ts';
import { openFileBlockDevice, VolumeFileTooLargeError } from './storage/file-block-device.ts';
import { volumeIdentity, type VolumeIdentity } from './scsi/identity.ts';
import { volumeKey, type MetaStore } from './meta-store.ts';

export interface OpenVolume {
  group: Group;
  volume: Volume;
  file: string;
  device: BlockDevice;
  identity: VolumeIdentity;
}

export function volumeFile(site: Site, group: string, volume: string): string {
  return path.join(site.dataDir, 'volumes', group, `${volume}.vol`);
}

/** The volume's dirty-region map (mirror/dirty-map-file.ts), beside its file. */
export function dirtyMapPath(site: Site, group: string, volume: string): string {
  return path.join(site.dataDir, 'volumes', group, `${volume}.dirty`);
}

export async function openVolumes(ctx: { topology: Topology; site: Site; meta: MetaStore; log: Logger }): Promise<OpenVolume[]> {
  const { topology: t, site, meta, log } = ctx;
  const opened: OpenVolume[] = [];
  try {
    for (const group of t.groups) {
      for (const volume of group.volumes) {
        opened.push(await openOne({ t, site, group, volume, meta, log }));
      }
    }
  } catch (err) {
    await Promise.all(opened.map((v) => v.device.close()));
    throw err;
  }
  return opened;
}

export async function openOne(ctx: {
  t: Topology; site: Site; group: Group; volume: Volume; meta: MetaStore; log: Logger;
}): Promise<OpenVolume> {
  const { t, site, group, volume, meta, log } = ctx;
  const file = volumeFile(site, group.name, volume.name);
  const identity = volumeIdentity({ cluster: t.name, group: group.name, volume: volume.name });
  const key = volumeKey(group.name, volume.name);
  const known = meta.read().volumes[key];
  await fs.mkdir(path.dirname(file), { recursive: true });
  if (known) {
    const exists = await fs.stat(file).then(() => true, () => false);
    if (!exists) {
      // The metadata says this volume held data: a silently recreated empty file would hide its loss.
      throw new DaemonError(`volume ${key}: file ${file} is missing although this site created it on ${known.createdAt}; restore it or remove the volume's record from ${site.dataDir}/agent-meta.json`);
    }
  }
  let device: BlockDevice;
  try {
    // A shrink forced through a topology apply, interrupted before the file was cut: cut it now.
    const shrink = known?.shrinkApprovedBytes === volume.sizeBytes;
    device = await openFileBlockDevice({ path: file, sizeBytes: volume.sizeBytes, shrink });
  } catch (err) {
    if (err instanceof VolumeFileTooLargeError) throw new DaemonError(`volume ${key}: ${err.message}`, 1, { cause: err });
    throw err;
  }
  const naaHex = identity.naa.toString('hex');
  if (!known || known.sizeBytes !== volume.sizeBytes || known.naaHex !== naaHex) {
    if (!known) log.info('volume created', { group: group.name, volume: volume.name, file, sizeBytes: volume.sizeBytes });
    else if (known.sizeBytes !== volume.sizeBytes) log.warn(volume.sizeBytes > known.sizeBytes ? 'volume grown' : 'volume shrunk', { group: group.name, volume: volume.name, from: known.sizeBytes, to: volume.sizeBytes });
    await meta.update((m) => {
      m.volumes[key] = {
        group: group.name, volume: volume.name, file, sizeBytes: volume.sizeBytes, naaHex,
        createdAt: known?.createdAt ?? new Date().toISOString(),
      };
    });
  }
  return { group, volume, file, device, identity };
}
