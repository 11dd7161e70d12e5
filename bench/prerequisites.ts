// What the benchmark needs before it starts anything: tgtd and tgtadm (Debian tgt), qemu-img with
// its iSCSI block driver (Debian qemu-utils, qemu-block-extra), root for tgtd's control socket, and
// Linux /proc. Returns every missing piece with the command that installs it; installs nothing.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

export const tgtdPath = '/usr/sbin/tgtd';
export const tgtadmPath = '/usr/sbin/tgtadm';

export interface Missing {
  readonly what: string;
  readonly fix: string;
}

function onPath(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/** qemu-img lists the protocols it can open; iscsi comes from qemu-block-extra's block-iscsi module. */
function qemuHasIscsi(): boolean {
  const r = spawnSync('qemu-img', ['--help'], { encoding: 'utf8' });
  if (/Supported formats:.*\biscsi\b/s.test(r.stdout ?? '')) return true;
  // Modules are loaded on demand and not always listed: look for the module file itself.
  const dirs = ['/usr/lib/x86_64-linux-gnu/qemu', '/usr/lib/aarch64-linux-gnu/qemu', '/usr/lib/qemu', '/usr/lib64/qemu'];
  return dirs.some((d) => fs.existsSync(`${d}/block-iscsi.so`));
}

export function checkPrerequisites(): Missing[] {
  const missing: Missing[] = [];
  if (process.platform !== 'linux' || !fs.existsSync('/proc/self/stat')) {
    missing.push({ what: 'Linux with /proc (CPU and memory figures come from /proc/<pid>)', fix: 'run the benchmark on Linux' });
    return missing;
  }
  if (!fs.existsSync(tgtdPath) || !fs.existsSync(tgtadmPath)) {
    missing.push({ what: `tgt (${tgtdPath}, ${tgtadmPath})`, fix: 'sudo apt-get install tgt' });
  }
  if (!onPath('qemu-img')) {
    missing.push({ what: 'qemu-img', fix: 'sudo apt-get install qemu-utils qemu-block-extra' });
  } else if (!qemuHasIscsi()) {
    missing.push({ what: "qemu-img's iSCSI block driver (block-iscsi.so)", fix: 'sudo apt-get install qemu-block-extra' });
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    missing.push({ what: 'root: tgtd keeps its control socket in /var/run/tgtd', fix: 'run it as root: sudo npm run bench' });
  }
  return missing;
}
