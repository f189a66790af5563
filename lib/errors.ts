/**
 * Errors the runner knows how to report.
 *
 * InputError: the user gave us something we cannot use (bad inventory, bad flag).
 * It maps to exit code 2 and is printed as one sentence, never as a stack.
 * Any other error is a failure of the step itself (exit 1).
 */
export class InputError extends Error {
  /** Where the bad value sits, e.g. `inventory.json: workers[1].privateIp`. */
  readonly where: string;
  constructor(where: string, message: string) {
    super(`${where}: ${message}`);
    this.name = 'InputError';
    this.where = where;
  }
}

/** A command we ran failed; carries what it printed so the message can show it. */
export class CommandError extends Error {
  readonly command: string;
  readonly code: number | null;
  readonly stderr: string;
  constructor(command: string, code: number | null, stderr: string, what = 'command failed') {
    const tail = stderr.trim().split('\n').slice(-5).join('\n');
    super(`${what} (exit ${code ?? 'none'}): ${command}${tail ? `\n${tail}` : ''}`);
    this.name = 'CommandError';
    this.command = command;
    this.code = code;
    this.stderr = stderr;
  }
}

/** Exit codes shared by every step. */
export const EXIT = { ok: 0, failure: 1, badInput: 2 } as const;
