// metroctl: the admin's CLI and DR runbook. Exit codes (DESIGN.md): 0 success, 1 the operation
// failed or was refused, 2 bad usage or bad input.
import { Command, CommanderError } from 'commander';
import { VERSION } from '../common/version.ts';
import { registerTopologyCommands } from './topology-command.ts';
import { registerUpCommand } from './up-command.ts';
import { registerStatusCommand } from './status-command.ts';
import { DaemonError, EXIT_USAGE, EXIT_FAILED } from '../common/daemon.ts';

const program = new Command('metroctl')
  .description('metrocluster: run, inspect and operate a two-site metro cluster')
  .version(VERSION)
  .showHelpAfterError()
  .exitOverride();

registerTopologyCommands(program);
registerUpCommand(program);
registerStatusCommand(program);

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
