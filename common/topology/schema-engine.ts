// A small table-driven validator over a parsed YAML document: specs in, plain values out, with
// every problem collected as an issue naming file:line:column, the field path, what was found and
// what was expected. Pure. Fields that fail come out undefined; callers check semantics on the rest.
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';
import { parseSize, sizeExpected } from './size.ts';
import { closest, didYouMean } from './suggest.ts';
import type { TopologyIssue } from './types.ts';

/** What was wrong with a value: `found` defaults to a description of the YAML node. */
export interface Problem { found?: string; expected: string; hint?: string }

export type Spec =
  | { kind: 'string'; expected: string; check?: (s: string) => Problem | undefined }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'integer'; min: number; max: number }
  | { kind: 'number'; greaterThan: number }
  | { kind: 'boolean' }
  | { kind: 'size' }
  | { kind: 'object'; expected: string; fields: Record<string, Field> }
  | { kind: 'list'; expected: string; items: Spec; minItems?: number }
  /** A mapping with keys chosen by the admin (checked semantically), each value of one spec. */
  | { kind: 'record'; expected: string; values: Spec };

export interface Field {
  spec: Spec;
  required?: boolean;
  /** Filled in when the key is absent (or null). For an object spec, `{}` fills its own defaults. */
  default?: unknown;
}

export interface Position { line: number; column: number }

export function describeExpected(spec: Spec): string {
  switch (spec.kind) {
    case 'string':
    case 'object':
    case 'list':
    case 'record':
      return spec.expected;
    case 'enum':
      return spec.values.length === 1 ? `"${spec.values[0]}"` : `one of ${spec.values.join(', ')}`;
    case 'integer':
      return spec.max === Number.MAX_SAFE_INTEGER
        ? `an integer of at least ${spec.min}`
        : `an integer from ${spec.min} to ${spec.max}`;
    case 'number':
      return `a number greater than ${spec.greaterThan}`;
    case 'boolean':
      return 'true or false';
    case 'size':
      return sizeExpected;
  }
}

export class Validator {
  readonly errors: TopologyIssue[] = [];
  /** Where each validated path's value starts, for later semantic checks. */
  readonly positions = new Map<string, Position>();

  constructor(
    private readonly doc: Document,
    private readonly lineCounter: LineCounter,
    private readonly file: string,
  ) {}

  positionOf(node: Node | null | undefined): Position {
    const offset = node?.range?.[0] ?? 0;
    const { line, col } = this.lineCounter.linePos(offset);
    return { line, column: col };
  }

  error(at: Position, path: string, message: string): void {
    this.errors.push({ file: this.file, line: at.line, column: at.column, path, message, severity: 'error' });
  }

  problem(node: Node | null | undefined, path: string, p: Problem): void {
    const found = p.found ?? describeNode(this.resolve(node));
    this.error(this.positionOf(node), path, `found ${found}, expected ${p.expected}${p.hint ? `; ${p.hint}` : ''}`);
  }

  validate(node: Node | null | undefined, spec: Spec, path: string): unknown {
    const n = this.resolve(node);
    this.positions.set(path, this.positionOf(node));
    switch (spec.kind) {
      case 'object':
        return this.object(n, spec, path);
      case 'list':
        return this.list(n, spec, path);
      case 'record':
        return this.record(n, spec, path);
      default:
        return this.scalar(n, spec, path);
    }
  }

  private resolve(node: Node | null | undefined): Node | null | undefined {
    return isAlias(node) ? node.resolve(this.doc) : node;
  }

  private object(node: Node | null | undefined, spec: Extract<Spec, { kind: 'object' }>, path: string): unknown {
    if (!isMap(node)) {
      this.problem(node, path, { expected: spec.expected });
      return undefined;
    }
    const known = Object.keys(spec.fields);
    const present = new Map<string, { key: Node; value: Node | null }>();
    const misspelt = new Set<string>();
    for (const pair of node.items) {
      const keyNode = pair.key as Node;
      const key = isScalar(keyNode) ? String(keyNode.value) : undefined;
      if (key !== undefined && key in spec.fields) {
        present.set(key, { key: keyNode, value: pair.value as Node | null });
        continue;
      }
      const shown = key ?? describeNode(keyNode);
      const guess = key === undefined ? undefined : closest(key, known);
      if (guess) misspelt.add(guess);
      this.problem(keyNode, join(path, shown), {
        found: `unknown key "${shown}"`,
        expected: `one of the keys ${known.join(', ')}`,
        hint: guess ? `did you mean "${guess}"?` : undefined,
      });
    }
    const out: Record<string, unknown> = {};
    for (const [name, field] of Object.entries(spec.fields)) {
      const entry = present.get(name);
      const fieldPath = join(path, name);
      const isNull = entry !== undefined && isScalar(this.resolve(entry.value)) && this.resolve(entry.value)!.toJSON() === null;
      if (entry === undefined || entry.value === null || isNull) {
        if (field.required) {
          // The misspelt key was already reported with its did-you-mean; one message is enough.
          if (entry === undefined && misspelt.has(name)) continue;
          if (entry === undefined) {
            this.problem(node, fieldPath, {
              found: `no "${name}" key in ${path || 'the top level'}`,
              expected: `${describeExpected(field.spec)} (required)`,
            });
          } else {
            this.problem(entry.value ?? entry.key, fieldPath, { found: 'nothing', expected: describeExpected(field.spec) });
          }
        } else if (field.default !== undefined) {
          out[name] = this.fillDefault(field);
        }
        continue;
      }
      out[name] = this.validate(entry.value, field.spec, fieldPath);
    }
    return out;
  }

  private fillDefault(field: Field): unknown {
    if (field.spec.kind !== 'object') return structuredClone(field.default);
    const out: Record<string, unknown> = {};
    for (const [name, sub] of Object.entries(field.spec.fields)) {
      if (sub.default !== undefined) out[name] = this.fillDefault(sub);
    }
    return out;
  }

  private list(node: Node | null | undefined, spec: Extract<Spec, { kind: 'list' }>, path: string): unknown {
    if (!isSeq(node)) {
      this.problem(node, path, { expected: spec.expected });
      return undefined;
    }
    if (spec.minItems !== undefined && node.items.length < spec.minItems) {
      this.problem(node, path, { found: 'an empty list', expected: spec.expected });
    }
    return node.items.map((item, i) => this.validate(item as Node | null, spec.items, `${path}[${i}]`));
  }

  private record(node: Node | null | undefined, spec: Extract<Spec, { kind: 'record' }>, path: string): unknown {
    if (!isMap(node)) {
      this.problem(node, path, { expected: spec.expected });
      return undefined;
    }
    const out: Record<string, unknown> = {};
    for (const pair of node.items) {
      const keyNode = pair.key as Node;
      const key = isScalar(keyNode) ? String(keyNode.value) : describeNode(keyNode);
      this.positions.set(`${join(path, key)}#key`, this.positionOf(keyNode));
      out[key] = this.validate(pair.value as Node | null, spec.values, join(path, key));
    }
    return out;
  }

  private scalar(node: Node | null | undefined, spec: Spec, path: string): unknown {
    const value = isScalar(node) ? node.value : undefined;
    const expected = describeExpected(spec);
    const quotedNumber = typeof value === 'string' && /^-?\d+(\.\d+)?$/.test(value.trim());
    const unquote = quotedNumber ? 'write the number without quotes' : undefined;
    switch (spec.kind) {
      case 'string': {
        if (typeof value !== 'string' || value.trim() === '') {
          const quote = typeof value === 'number' || typeof value === 'boolean' ? 'put it in quotes to use it as text' : undefined;
          this.problem(node, path, { expected, hint: quote });
          return undefined;
        }
        const p = spec.check?.(value);
        if (p) {
          this.problem(node, path, p);
          return undefined;
        }
        return value;
      }
      case 'enum': {
        if (typeof value === 'string' && spec.values.includes(value)) return value;
        const hint = typeof value === 'string' && spec.values.length > 1 ? didYouMean(value, spec.values).replace(/^; /, '') : '';
        this.problem(node, path, { expected, hint: hint || undefined });
        return undefined;
      }
      case 'integer':
        if (typeof value === 'number' && Number.isInteger(value) && value >= spec.min && value <= spec.max) return value;
        this.problem(node, path, { expected, hint: unquote });
        return undefined;
      case 'number':
        if (typeof value === 'number' && Number.isFinite(value) && value > spec.greaterThan) return value;
        this.problem(node, path, { expected, hint: unquote });
        return undefined;
      case 'boolean':
        if (typeof value === 'boolean') return value;
        this.problem(node, path, { expected });
        return undefined;
      case 'size': {
        if (typeof value !== 'string' && typeof value !== 'number') {
          this.problem(node, path, { expected });
          return undefined;
        }
        const r = parseSize(String(value));
        if (r.ok) return r.bytes;
        this.error(this.positionOf(node), path, r.reason);
        return undefined;
      }
      default:
        throw new Error(`not a scalar spec: ${spec.kind}`);
    }
  }
}

export function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

/** How a YAML value reads in a message: 70000, "fast", true, a mapping, a list, nothing. */
export function describeNode(node: Node | null | undefined): string {
  if (node === null || node === undefined) return 'nothing';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'nothing';
    if (typeof v === 'string') return JSON.stringify(v);
    return String(v);
  }
  return 'an unexpected value';
}
