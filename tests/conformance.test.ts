// libiscsi's conformance suite (iscsi-test-cu --dataloss, two initiator names) against a running
// agent. The agent must come through the whole suite without crashing; the counts of failed and
// skipped tests are printed for the record, together with the names of the failures.
import test from 'ava';
import { startCluster, type TestCluster } from './harness/cluster.ts';
import { requireTools } from './harness/tools.ts';
import { runConformance } from './harness/conformance.ts';

let cluster: TestCluster | undefined;
test.after.always(async () => { await cluster?.stop(); });

test.serial('iscsi-test-cu runs its whole suite against the agent, which stays up', async (t) => {
  if (!requireTools(t, ['iscsi-test-cu'])) return;
  cluster = await startCluster({
    groups: `
  - name: conf
    preferredSite: alpha
    volumes: [ { name: disk, size: 128MiB } ]`,
  });
  const c = cluster;
  const pid = c.up.pidOf('agent alpha');
  const report = await runConformance({
    url: `iscsi://${c.portal(1)}/${c.iqn('conf')}/0`,
    initiator: 'iqn.2026-11.org.example:conformance-1',
    initiator2: 'iqn.2026-11.org.example:conformance-2',
  });
  t.false(report.timedOut, 'the suite finished within its deadline');
  t.truthy(report.summary, `CUnit printed its run summary:\n${report.raw.slice(-3000)}`);
  const s = report.summary!;
  t.log(`iscsi-test-cu: ${s.tests} tests, ${s.passed} passed, ${s.failed} failed, ${report.skipped.length} skipped`);
  for (const f of report.failed) t.log(`FAILED ${f.name}: ${f.reason}`);
  t.true(s.ran >= 600, `the whole suite ran (${s.ran} tests)`);
  t.notRegex(c.up.output(), /agent alpha exited/, 'the agent never crashed during the suite');
  t.is(c.up.pidOf('agent alpha'), pid);
});
