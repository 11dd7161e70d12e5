// `metroctl certs init|issue|rotate|list`: the cluster's certificates. init makes the CA and every
// daemon's and the local admin's pair (the automatic PKI, or a folder for a production
// `security.tls`); issue makes a pair for an admin, a viewer or a daemon; rotate replaces a pair in
// place (new key, new certificate; a daemon uses it from its next start); list shows who holds
// which certificate until when. Keys are written mode 0600 and never printed.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import Table from 'cli-table3';
import type { Topology, TlsKeyPair } from '../common/topology/index.ts';
import { DaemonError, EXIT_USAGE, loadTopologyOrExit } from '../common/daemon.ts';
import { autoPkiDir, caFiles, ensurePkiAt, issueFor, leafValidityDays, localAdmin, pairFiles, usesAutoPki } from '../common/tls/pki.ts';
import { describeIdentity, identityFromSan, isValidName, type Identity } from '../common/tls/identity.ts';

interface WhoOptions { agent?: string; witness?: boolean; admin?: string; viewer?: string }

function identityOf(t: Topology, o: WhoOptions): Identity {
  const given = [o.agent !== undefined, o.witness === true, o.admin !== undefined, o.viewer !== undefined].filter(Boolean).length;
  if (given !== 1) throw new DaemonError('name exactly one holder: --agent SITE, --witness, --admin NAME or --viewer NAME', EXIT_USAGE);
  if (o.witness) return { kind: 'witness', cluster: t.name };
  if (o.agent !== undefined) {
    if (!t.sites.some((s) => s.name === o.agent)) throw new DaemonError(`--agent ${o.agent}: not a site of ${t.file} (${t.sites.map((s) => s.name).join(', ')})`, EXIT_USAGE);
    return { kind: 'agent', cluster: t.name, site: o.agent };
  }
  const [kind, name] = o.admin !== undefined ? ['admin', o.admin] as const : ['viewer', o.viewer!] as const;
  if (!isValidName(name)) throw new DaemonError(`--${kind} ${name}: a name of letters, digits, '.', '_' and '-', at most 63 characters`, EXIT_USAGE);
  return { kind, cluster: t.name, name };
}

/** The CA pair that signs: the automatic PKI's, or security.tls.ca with --ca-key (default: ca.key beside it). */
function signingCa(t: Topology, caKey?: string): TlsKeyPair {
  if (t.security?.insecure) throw new DaemonError('this topology runs with security.insecure: true; it has no CA', 1);
  const tls = t.security?.tls;
  const ca = tls ? { cert: tls.ca, key: caKey ?? path.join(path.dirname(tls.ca), 'ca.key') } : { ...caFiles(autoPkiDir(t)), ...(caKey ? { key: caKey } : {}) };
  if (!fs.existsSync(ca.cert)) throw new DaemonError(`no cluster CA certificate at ${ca.cert}: run metroctl certs init -f ${t.file}`);
  if (!fs.existsSync(ca.key)) throw new DaemonError(`no CA private key at ${ca.key}: pass --ca-key FILE`);
  return ca;
}

/** Where a holder's pair lives: a daemon's configured files, else <dir>/<kind>-<name>.crt|.key. */
function pairOf(t: Topology, id: Identity, outDir?: string): TlsKeyPair {
  if (outDir !== undefined) return pairFiles(outDir, id);
  const tls = t.security?.tls;
  if (tls && (id.kind === 'agent' || id.kind === 'witness')) {
    const pair = tls.daemons[id.kind === 'agent' ? id.site : 'witness'];
    if (pair) return pair;
  }
  return pairFiles(tls ? process.cwd() : autoPkiDir(t), id);
}

function withWho(c: Command): Command {
  return c
    .option('--agent <site>', "the agent of a site (a daemon certificate with the site's addresses)")
    .option('--witness', 'the witness')
    .option('--admin <name>', 'an admin: may call every operation')
    .option('--viewer <name>', 'a viewer: may read status and health only')
    .option('--days <n>', `validity in days (default ${leafValidityDays})`)
    .option('--ca-key <file>', 'the CA private key (default: ca.key beside the CA certificate)');
}

function days(o: { days?: string }): number {
  if (o.days === undefined) return leafValidityDays;
  const n = Number(o.days);
  if (!Number.isInteger(n) || n < 1 || n > 3650) throw new DaemonError(`--days ${o.days}: a whole number of days from 1 to 3650`, EXIT_USAGE);
  return n;
}

export function registerCertsCommands(program: Command): void {
  const certs = program.command('certs').description("the cluster's certificates: CA, daemons, admins and viewers");
  certs
    .command('init')
    .description("make the cluster CA and every daemon's and the local admin's certificate (what exists is kept)")
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('--dir <dir>', 'make them in this folder (for a security.tls block) instead of the automatic PKI')
    .addHelpText('after', '\nExamples:\n  metroctl certs init -f cluster.yaml\n  metroctl certs init -f cluster.yaml --dir /etc/metrocluster/tls\n')
    .action(async (o: { file: string; dir?: string }) => {
      const t = await loadTopologyOrExit(o.file);
      if (o.dir === undefined && !usesAutoPki(t)) {
        throw new DaemonError('this topology has a security block: its files are named there; use --dir to make a new set', EXIT_USAGE);
      }
      const dir = path.resolve(o.dir ?? autoPkiDir(t));
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const r = await ensurePkiAt(t, dir);
      process.stdout.write(r.made.length ? r.made.map((m) => `made ${m}\n`).join('') : `certificates in ${dir} are complete\n`);
      if (o.dir !== undefined) process.stdout.write(securityBlock(t, dir));
    });
  withWho(certs.command('issue'))
    .description('make a new key and certificate for one holder, signed by the cluster CA')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('--out <dir>', 'folder for <kind>-<name>.crt and .key (default: the automatic PKI, or the current folder)')
    .addHelpText('after', '\nExamples:\n  metroctl certs issue --admin alice -f cluster.yaml\n  metroctl certs issue --viewer nagios --days 90 -f cluster.yaml --out ./certs\n  metroctl certs issue --agent beta -f cluster.yaml\n')
    .action(async (o: WhoOptions & { file: string; out?: string; days?: string; caKey?: string }) => {
      const t = await loadTopologyOrExit(o.file);
      const id = identityOf(t, o);
      const ca = signingCa(t, o.caKey);
      const out = pairFiles(o.out ?? (usesAutoPki(t) ? autoPkiDir(t) : process.cwd()), id);
      if (fs.existsSync(out.cert) || fs.existsSync(out.key)) {
        throw new DaemonError(`${out.cert} exists: use metroctl certs rotate to replace a certificate`);
      }
      await issueFor(t, ca, id, out, days(o));
      process.stdout.write(`issued ${describeIdentity(id)}: ${out.cert} (key ${out.key}, mode 600)\n`);
    });
  withWho(certs.command('rotate'))
    .description('replace the key and certificate of one holder (a daemon takes them on SIGHUP or at its next start)')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('--out <dir>', 'folder of the pair to replace (default: where the topology or the automatic PKI keeps it)')
    .addHelpText('after', '\nExamples:\n  metroctl certs rotate --agent alpha -f cluster.yaml   # then SIGHUP the agent, or restart it\n  metroctl certs rotate --witness -f cluster.yaml\n')
    .action(async (o: WhoOptions & { file: string; out?: string; days?: string; caKey?: string }) => {
      const t = await loadTopologyOrExit(o.file);
      const id = identityOf(t, o);
      const ca = signingCa(t, o.caKey);
      const pair = pairOf(t, id, o.out);
      const old = fs.existsSync(pair.cert) ? new crypto.X509Certificate(fs.readFileSync(pair.cert)) : undefined;
      await issueFor(t, ca, id, pair, days(o));
      const fresh = new crypto.X509Certificate(fs.readFileSync(pair.cert));
      process.stdout.write(
        `rotated ${describeIdentity(id)}: ${pair.cert} serial ${old ? `${old.serialNumber} -> ` : ''}${fresh.serialNumber}, valid until ${fresh.validTo}\n` +
          (id.kind === 'agent' || id.kind === 'witness' ? `the ${describeIdentity(id)} presents it after SIGHUP (kill -HUP <pid>, pid in metroctl status) or a restart\n` : ''),
      );
    });
  certs
    .command('list')
    .description('show the certificates of the automatic PKI or of security.tls: holder, serial, expiry')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .addHelpText('after', '\nExamples:\n  metroctl certs list -f cluster.yaml\n')
    .action(async (o: { file: string }) => {
      const t = await loadTopologyOrExit(o.file);
      const tls = t.security?.tls;
      const files = tls
        ? [tls.ca, ...Object.values(tls.daemons).map((p) => p.cert), ...(tls.metroctl ? [tls.metroctl.cert] : [])]
        : fs.existsSync(autoPkiDir(t)) ? fs.readdirSync(autoPkiDir(t)).filter((f) => f.endsWith('.crt')).sort().map((f) => path.join(autoPkiDir(t), f)) : [];
      const table = new Table({ head: ['holder', 'file', 'serial', 'valid until'], ...(process.stdout.isTTY ? {} : { style: { head: [], border: [] } }) });
      for (const f of files) {
        const c = new crypto.X509Certificate(fs.readFileSync(f));
        const id = identityFromSan(c.subjectAltName);
        table.push([c.ca ? 'cluster CA' : id ? describeIdentity(id) : c.subject, f, c.serialNumber, c.validTo]);
      }
      process.stdout.write(`${table.toString()}\n`);
    });
}

function securityBlock(t: Topology, dir: string): string {
  const pair = (id: Identity): string => { const p = pairFiles(dir, id); return `{ cert: ${p.cert}, key: ${p.key} }`; };
  return [
    '\nadd to the topology (and copy each daemon\'s pair to its machine, the key mode 600):',
    'security:', '  tls:', `    ca: ${caFiles(dir).cert}`, '    daemons:',
    ...t.sites.map((s) => `      ${s.name}: ${pair({ kind: 'agent', cluster: t.name, site: s.name })}`),
    `      witness: ${pair({ kind: 'witness', cluster: t.name })}`,
    `    metroctl: ${pair(localAdmin(t))}`,
    `keep ${caFiles(dir).key} offline: it signs every certificate of the cluster`, '',
  ].join('\n');
}
