// metroctl: the admin's CLI and DR runbook. Exit codes (DESIGN.md): 0 success, 1 the operation
// failed or was refused, 2 bad usage or bad input.
import { Command, CommanderError } from 'commander';
import { VERSION } from '../common/version.ts';
import { registerTopologyCommands } from './topology-command.ts';
import { registerUpCommand } from './up-command.ts';
import { registerStatusCommand } from './status-command.ts';
import { registerResyncRateCommand, registerVerifyCommand } from './verify-command.ts';
import { registerRoleCommands } from './role-commands.ts';
import { registerRunbookCommands } from './runbook/command.ts';
import { registerDrillCommands } from './drill-command.ts';
import { registerCertsCommands } from './certs-command.ts';
import { DaemonError, EXIT_USAGE, EXIT_FAILED, loadTopologyOrExit } from '../common/daemon.ts';
import { loadGrpcSecurity, useGrpcSecurity } from '../common/tls/grpc-security.ts';

const program = new Command('metroctl')
  .description('metrocluster: run, inspect and operate a two-site metro cluster')
  .version(VERSION)
  .option('--cert <file>', 'certificate to present to the daemons (default: security.tls.metroctl, or the local admin of the automatic PKI); env METROCTL_CERT')
  .option('--key <file>', 'private key of --cert (mode 600); env METROCTL_KEY')
  .showHelpAfterError()
  .exitOverride();

// Every command that names a topology talks to its daemons with the operator's certificate,
// loaded (and checked) at its first dial.
program.hook('preAction', async (_root, action) => {
  const file = action.opts<{ file?: unknown }>().file;
  if (typeof file !== 'string') return;
  const t = await loadTopologyOrExit(file);
  const o = program.opts<{ cert?: string; key?: string }>();
  const given = { cert: o.cert ?? process.env.METROCTL_CERT, key: o.key ?? process.env.METROCTL_KEY };
  useGrpcSecurity(() => {
    const sec = loadGrpcSecurity(t, 'operator', given);
    for (const w of sec.warnings) process.stderr.write(`metroctl: warning: ${w}\n`);
    return sec;
  });
});

registerTopologyCommands(program);
registerUpCommand(program);
registerStatusCommand(program);
registerVerifyCommand(program);
registerResyncRateCommand(program);
registerRoleCommands(program);
registerRunbookCommands(program);
registerDrillCommands(program);
registerCertsCommands(program);

try {
  await program.parseAsync();
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
  }
  if (err instanceof DaemonError) {
    process.stderr.write(`metroctl: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  process.stderr.write(`metroctl: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(EXIT_FAILED);
}
