import test from 'ava';
import { aluaStates, type GroupFacts } from './alua-policy.ts';

const base: GroupFacts = {
  self: 'alpha', sites: ['alpha', 'beta'], primary: 'alpha', fenced: false,
  peerUpToDate: true, link: 'attached',
};

const cases: Array<[string, Partial<GroupFacts>, Record<string, string>]> = [
  ['primary, secondary forwarding and up-to-date', {}, { alpha: 'active-optimized', beta: 'active-non-optimized' }],
  ['primary, secondary outdated', { peerUpToDate: false }, { alpha: 'active-optimized', beta: 'unavailable' }],
  ['primary fenced', { fenced: true }, { alpha: 'unavailable', beta: 'active-non-optimized' }],
  ['secondary, link attached', { self: 'beta' }, { alpha: 'active-optimized', beta: 'active-non-optimized' }],
  ['secondary, link being re-established', { self: 'beta', link: 'connecting' }, { alpha: 'active-optimized', beta: 'transitioning' }],
  ['secondary, link lost past the transition bound', { self: 'beta', link: 'lost' }, { alpha: 'active-optimized', beta: 'unavailable' }],
  ['secondary fenced', { self: 'beta', fenced: true }, { alpha: 'active-optimized', beta: 'unavailable' }],
  ['no primary known (promotion under way)', { primary: undefined }, { alpha: 'transitioning', beta: 'transitioning' }],
  ['primary moved to beta, seen from alpha with its link attached', { primary: 'beta' }, { alpha: 'active-non-optimized', beta: 'active-optimized' }],
];

for (const [name, facts, expected] of cases) {
  test(`ALUA states: ${name}`, (t) => {
    t.deepEqual(Object.fromEntries(aluaStates({ ...base, ...facts })), expected);
  });
}
