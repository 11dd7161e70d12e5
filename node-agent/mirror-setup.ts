// Pieces of a group's mirror that the agent builds at start and again when a topology apply adds a
// volume or a group: a volume's dirty map (file beside the volume, replayed) and the ack policy of
// the group's replication settings.
import type { ReplicationConfig, Site } from '../common/topology/index.ts';
import { dirtyMapPath } from './volumes.ts';
import { DirtyMap, dirtyMapDefaults } from './mirror/dirty-map.ts';
import { openDirtyMapFile, replayLog } from './mirror/dirty-map-file.ts';
import fs from 'node:fs/promises';
import { ackPolicyDefaults, type AckPolicyConfig } from './mirror/ack-policy.ts';
import type { SessionVolume } from './mirror/mirror-session.ts';
import type { BlockDevice } from './storage/block-device.ts';

export const regionSizeBytes = dirtyMapDefaults.regionSizeBytes;

export async function openSessionVolume(site: Site, group: string, volume: { name: string; sizeBytes: number }, index: number, device: BlockDevice): Promise<SessionVolume> {
  const { file, image } = await openDirtyMapFile(dirtyMapPath(site, group, volume.name), {
    regionSizeBytes, regionCount: Math.ceil(volume.sizeBytes / regionSizeBytes), extentRegions: dirtyMapDefaults.extentRegions,
  });
  const dirty = new DirtyMap({ ...dirtyMapDefaults, volumeSizeBytes: volume.sizeBytes }, image);
  return { index, sizeBytes: volume.sizeBytes, regionSizeBytes, dirty, dirtyFile: file, device };
}

export function ackPolicyOf(r: ReplicationConfig): AckPolicyConfig {
  return { ...ackPolicyDefaults, policy: r.ack, syncMaxRttMs: r.syncMaxRttMs, maxLagMs: r.maxLagMs };
}

/**
 * A secondary's own dirty regions of a volume: its dirty-map file from when it was the primary (bits
 * and activity-log extents), read without changing it; undefined when there is none.
 */
export async function ownDirtyRegions(file: string, sizeBytes: number, regionSizeBytes: number): Promise<Uint8Array | undefined> {
  const log = await fs.readFile(file).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return undefined; throw e; });
  if (!log || log.length === 0) return undefined;
  const regionCount = Math.ceil(sizeBytes / regionSizeBytes);
  let image;
  try {
    ({ image } = replayLog(log, { regionSizeBytes, regionCount, extentRegions: dirtyMapDefaults.extentRegions }));
  } catch {
    // A map of another geometry (or unreadable): every region may differ.
    const all = new Uint8Array(Math.ceil(regionCount / 8)).fill(0xff);
    if (regionCount & 7) all[all.length - 1] = (1 << (regionCount & 7)) - 1;
    return all;
  }
  const map = new DirtyMap({ ...dirtyMapDefaults, volumeSizeBytes: sizeBytes, regionSizeBytes }, image);
  return map.dirtyBitmap().bytes;
}
