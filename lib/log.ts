/**
 * Short log sentences keyed by a subject (host or certificate): `controller-0: connected`.
 * Everything goes to stderr so that `--json` output on stdout stays machine-readable.
 */
export interface Logger {
  /** A normal progress line. */
  info(subject: string, message: string): void;
  /** Something the user should look at, but not a failure. */
  warn(subject: string, message: string): void;
  /** A failure of one subject; the step decides whether it is fatal. */
  error(subject: string, message: string): void;
  /** The real command being run; shown only with --verbose. */
  command(subject: string, commandLine: string): void;
  /** A detail not worth a line by default (e.g. "kept: unchanged"); shown only with --verbose. */
  detail(subject: string, message: string): void;
  readonly verbose: boolean;
}

export function createLogger(opts: { verbose: boolean; write?: (line: string) => void }): Logger {
  const write = opts.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const line = (tag: string, subject: string, message: string) => {
    const prefix = subject ? `${subject}: ` : '';
    for (const part of message.split('\n')) write(`${tag}${prefix}${part}`);
  };
  return {
    verbose: opts.verbose,
    info: (s, m) => line('', s, m),
    warn: (s, m) => line('warning: ', s, m),
    error: (s, m) => line('error: ', s, m),
    command: (s, c) => {
      if (opts.verbose) line('$ ', s, c);
    },
    detail: (s, m) => {
      if (opts.verbose) line('', s, m);
    },
  };
}

/** A logger that keeps lines in memory: for tests and for capturing a step's output. */
export function memoryLogger(verbose = false): Logger & { lines: string[] } {
  const lines: string[] = [];
  return Object.assign(createLogger({ verbose, write: (l) => lines.push(l) }), { lines });
}
