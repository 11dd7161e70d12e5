// Who a certificate speaks for. Every certificate the cluster CA issues carries one URI SAN
// `metrocluster://<cluster>/<kind>[/<name>]`; the role checks read it, never the subject CN.
// Pure: no files, no crypto.

export type Identity =
  | { kind: 'agent'; cluster: string; site: string }
  | { kind: 'witness'; cluster: string }
  | { kind: 'admin'; cluster: string; name: string }
  | { kind: 'viewer'; cluster: string; name: string };

export type IdentityKind = Identity['kind'];

const scheme = 'metrocluster://';
/** Names inside a URI: the same characters topology names may use, so no escaping is needed. */
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function isValidName(name: string): boolean {
  return namePattern.test(name);
}

export function identityUri(id: Identity): string {
  switch (id.kind) {
    case 'agent': return `${scheme}${id.cluster}/agent/${id.site}`;
    case 'witness': return `${scheme}${id.cluster}/witness`;
    case 'admin': return `${scheme}${id.cluster}/admin/${id.name}`;
    case 'viewer': return `${scheme}${id.cluster}/viewer/${id.name}`;
  }
}

export function parseIdentityUri(uri: string): Identity | undefined {
  if (!uri.startsWith(scheme)) return undefined;
  const parts = uri.slice(scheme.length).split('/');
  if (!parts.every(isValidName)) return undefined;
  const [cluster, kind, name] = parts;
  if (parts.length === 2 && kind === 'witness') return { kind, cluster };
  if (parts.length !== 3) return undefined;
  if (kind === 'agent') return { kind, cluster, site: name };
  if (kind === 'admin' || kind === 'viewer') return { kind, cluster, name };
  return undefined;
}

/**
 * The identities named by a certificate's subjectAltName as Node prints it
 * (`URI:metrocluster://c/agent/a, IP Address:127.0.0.1, DNS:x`). Node quotes an entry holding a
 * comma or quote as a JSON string; such an entry is never one of ours and is skipped.
 */
export function identitiesFromSan(subjectAltName: string | undefined): Identity[] {
  if (!subjectAltName) return [];
  const out: Identity[] = [];
  for (const entry of subjectAltName.split(', ')) {
    if (!entry.startsWith('URI:')) continue;
    const id = parseIdentityUri(entry.slice(4));
    if (id) out.push(id);
  }
  return out;
}

/** The one identity of a certificate; a certificate naming none or several identifies nobody. */
export function identityFromSan(subjectAltName: string | undefined): Identity | undefined {
  const ids = identitiesFromSan(subjectAltName);
  return ids.length === 1 ? ids[0] : undefined;
}

export function sameIdentity(a: Identity, b: Identity): boolean {
  return identityUri(a) === identityUri(b);
}

/** For log lines and refusals: `agent beta`, `admin alice`, `witness`. */
export function describeIdentity(id: Identity): string {
  switch (id.kind) {
    case 'agent': return `agent ${id.site}`;
    case 'witness': return 'witness';
    case 'admin': return `admin ${id.name}`;
    case 'viewer': return `viewer ${id.name}`;
  }
}
