// Checks for the string fields of a topology: names usable in an IQN, addresses, initiator names,
// cron schedules. Each returns undefined when the value is fine, or what was expected. Pure.
import { isIPv4, isIPv6 } from 'node:net';
import { Cron } from 'croner';
import type { Problem } from './schema-engine.ts';

export const nameMaxChars = 63;
export const nameRule =
  `a name usable in an iSCSI qualified name: lowercase letters a-z, digits 0-9, '-' and '.', ` +
  `starting and ending with a letter or digit, at most ${nameMaxChars} characters`;

export function checkName(s: string): Problem | undefined {
  if (s.length <= nameMaxChars && /^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$/.test(s)) return undefined;
  const lower = s.toLowerCase().replace(/[^a-z0-9.-]+/g, '-').replace(/^[.-]+|[.-]+$/g, '');
  const hint = lower && lower !== s && lower.length <= nameMaxChars ? `for example "${lower}"` : undefined;
  return { expected: nameRule, hint };
}

export const addressExpected = 'an IPv4 address (10.0.0.1), an IPv6 address (fd00::1) or a hostname (san-a.example.net)';

export function checkAddress(s: string): Problem | undefined {
  if (s.startsWith('[') && s.endsWith(']') && isIPv6(s.slice(1, -1))) {
    return { expected: addressExpected, hint: `write the IPv6 address without brackets: ${s.slice(1, -1)}` };
  }
  if (isIPv4(s) || isIPv6(s)) {
    if (s === '0.0.0.0' || normaliseAddress(s) === '::') {
      return { expected: `${addressExpected} that peers can connect to; ${s} is the unspecified (any) address` };
    }
    return undefined;
  }
  if (/:/.test(s)) return { expected: addressExpected, hint: 'the port goes in its own "port" field' };
  const host = s.endsWith('.') ? s.slice(0, -1) : s;
  const labels = host.split('.');
  const labelOk = (l: string) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l);
  // A name whose last label is all digits is a mistyped IPv4 address (RFC 1123 §2.1).
  if (host.length <= 253 && labels.every(labelOk) && !/^\d+$/.test(labels[labels.length - 1])) return undefined;
  return { expected: addressExpected };
}

/** One spelling per address, so that clashes are found whatever the notation. */
export function normaliseAddress(s: string): string {
  if (isIPv6(s)) return new URL(`http://[${s}]`).hostname.slice(1, -1);
  return s.toLowerCase().replace(/\.$/, '');
}

export const initiatorExpected =
  'an iSCSI initiator name: iqn.YYYY-MM.reversed.domain[:identifier] (e.g. iqn.2026-11.org.example:host1), ' +
  'eui. followed by 16 hex digits, or naa. followed by 16 or 32 hex digits';

export function checkInitiator(s: string): Problem | undefined {
  // RFC 3720 §3.2.6.3 name formats; IQNs are lowercase after stringprep.
  if (/^iqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[a-z0-9.:\-]+)?$/.test(s)) return undefined;
  if (/^eui\.[0-9A-Fa-f]{16}$/.test(s) || /^naa\.(?:[0-9A-Fa-f]{16}|[0-9A-Fa-f]{32})$/.test(s)) return undefined;
  const hint = /^iqn\./i.test(s) && s !== s.toLowerCase() ? 'IQNs are lowercase' : undefined;
  return { expected: initiatorExpected, hint };
}

export const cronExpected =
  'a 5-field cron schedule "minute hour day-of-month month day-of-week", e.g. "0 3 * * 0" for Sundays at 03:00';

export function checkCron(s: string): Problem | undefined {
  const fields = s.trim().split(/\s+/);
  if (fields.length !== 5) {
    return { expected: cronExpected, hint: `it has ${fields.length} field${fields.length === 1 ? '' : 's'}` };
  }
  try {
    const cron = new Cron(s, { paused: true });
    const next = cron.nextRun();
    cron.stop();
    if (next === null) return { expected: cronExpected, hint: 'this schedule never fires' };
    return undefined;
  } catch (e) {
    const reason = (e as Error).message.replace(/^CronPattern:\s*/, '');
    return { expected: cronExpected, hint: reason };
  }
}

export const userExpected = 'a CHAP user name: printable characters without spaces, at most 255';

export function checkChapUser(s: string): Problem | undefined {
  return /^[\x21-\x7e]{1,255}$/.test(s) ? undefined : { expected: userExpected };
}

export const pathExpected = 'a file or directory path (relative paths are relative to the topology file)';

export function checkPath(s: string): Problem | undefined {
  return s.includes('\0') ? { expected: pathExpected } : undefined;
}
