// Sizes with binary units ("512MiB", "1GiB", "2TiB") or plain bytes, as written in a topology.
// Contract: parseSize returns bytes, a positive multiple of the 512-byte block, or a sentence
// saying what was found and what is expected. Decimal units (MB, GB) are refused: 1GB != 1GiB.

export const blockSizeBytes = 512;

const binaryUnits: Record<string, number> = {
  B: 1,
  KiB: 2 ** 10,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
  PiB: 2 ** 50,
};

const decimalUnits: Record<string, { binary: string; factor: number }> = {
  KB: { binary: 'KiB', factor: 1e3 },
  MB: { binary: 'MiB', factor: 1e6 },
  GB: { binary: 'GiB', factor: 1e9 },
  TB: { binary: 'TiB', factor: 1e12 },
  PB: { binary: 'PiB', factor: 1e15 },
};

export const sizeExpected =
  'a size such as 512MiB, 1GiB or 2TiB (units KiB, MiB, GiB, TiB, PiB, or a plain number of bytes)';

export type SizeResult = { ok: true; bytes: number } | { ok: false; reason: string };

export function parseSize(text: string): SizeResult {
  const found = /^\d+$/.test(text) ? text : JSON.stringify(text);
  const m = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(text);
  if (!m) return { ok: false, reason: `found ${found}, expected ${sizeExpected}` };
  const amount = Number(m[1]);
  const unit = m[2];
  if (unit !== '' && !(unit in binaryUnits)) return { ok: false, reason: unknownUnit(found, m[1], unit) };
  const bytes = amount * (unit === '' ? 1 : binaryUnits[unit]);
  if (!Number.isInteger(bytes)) {
    return { ok: false, reason: `found ${found}, which is not a whole number of bytes, expected ${sizeExpected}` };
  }
  if (bytes <= 0) return { ok: false, reason: `found ${found}, expected a size greater than 0` };
  if (!Number.isSafeInteger(bytes)) {
    return { ok: false, reason: `found ${found}, expected a size below 8PiB` };
  }
  if (bytes % blockSizeBytes !== 0) {
    const down = Math.floor(bytes / blockSizeBytes) * blockSizeBytes;
    const up = down + blockSizeBytes;
    const near = down > 0 ? `${down} or ${up}` : `${up}`;
    return {
      ok: false,
      reason:
        `found ${found}${found === String(bytes) ? '' : ` (${bytes} bytes)`}, expected a multiple of ${blockSizeBytes} bytes (the block size); ` +
        `the nearest are ${near} bytes`,
    };
  }
  return { ok: true, bytes };
}

function unknownUnit(found: string, amount: string, unit: string): string {
  const upper = unit.toUpperCase();
  const decimal = decimalUnits[upper];
  if (decimal) {
    const bytes = Number(amount) * decimal.factor;
    return (
      `found ${found}, expected binary units: decimal units (KB, MB, GB, TB) are refused because ` +
      `1${upper} = ${decimal.factor} bytes but 1${decimal.binary} = ${binaryUnits[decimal.binary]} bytes; ` +
      `write ${amount}${decimal.binary}, or ${bytes} if you mean ${bytes} bytes`
    );
  }
  const binary = Object.keys(binaryUnits).find((u) => u.toUpperCase() === upper || u[0] === upper);
  const hint = binary && binary !== 'B' ? `; did you mean ${amount}${binary}?` : '';
  return `found ${found}, expected ${sizeExpected}${hint}`;
}

/** "3.25 GiB": for summaries and warnings, never parsed back. */
export function formatSize(bytes: number): string {
  const units = ['PiB', 'TiB', 'GiB', 'MiB', 'KiB'];
  for (const unit of units) {
    const factor = binaryUnits[unit];
    if (bytes >= factor) {
      const value = bytes / factor;
      return `${Number(value.toFixed(2))} ${unit}`;
    }
  }
  return `${bytes} bytes`;
}
