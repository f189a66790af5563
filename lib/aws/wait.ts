/** Bounded polling: every wait in the aws provider has an interval, a limit and a sentence for when it runs out. */

/** How long the provider waits for EC2, in milliseconds. Tests shrink them. */
export interface Timings {
  /** Between two polls of instance state. */
  pollMs: number;
  /** For every instance to reach "running". */
  runningTimeoutMs: number;
  /** For every instance to reach "terminated". */
  terminatedTimeoutMs: number;
  /** Between two reads of the console output. */
  consolePollMs: number;
  /** For cloud-init to print the SSH host keys on the console. */
  consoleTimeoutMs: number;
  /** Retrying a delete that fails with DependencyViolation (ENIs outlive their instances a while). */
  dependencyTimeoutMs: number;
  /** Retrying a call on a resource EC2 just created but does not show yet (eventual consistency). */
  consistencyTimeoutMs: number;
}

/** Real EC2: instances run within a minute or two; cloud-init prints keys within a few minutes. */
export const DEFAULT_TIMINGS: Timings = {
  pollMs: 5_000,
  runningTimeoutMs: 10 * 60_000,
  terminatedTimeoutMs: 10 * 60_000,
  consolePollMs: 10_000,
  consoleTimeoutMs: 15 * 60_000,
  dependencyTimeoutMs: 5 * 60_000,
  consistencyTimeoutMs: 60_000,
};

/** A bounded wait ran out; the message says what to do. */
export class TimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TimeoutError';
  }
}

/** Waits `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Calls `attempt` until it returns a value other than undefined, at most until `timeoutMs` has
 * passed (it always runs at least once). Throws TimeoutError with `onTimeout()` as the message.
 */
export async function pollUntil<T>(
  attempt: () => Promise<T | undefined>,
  opts: { intervalMs: number; timeoutMs: number; onTimeout: () => string },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const value = await attempt();
    if (value !== undefined) return value;
    if (Date.now() + opts.intervalMs > deadline) throw new TimeoutError(opts.onTimeout());
    await sleep(opts.intervalMs);
  }
}

/**
 * Runs `fn`, retrying while `shouldRetry(error)` says so, until `timeoutMs`; then rethrows the
 * last error. For EC2's eventual consistency and lingering dependencies.
 */
export async function retryWhile<T>(
  fn: () => Promise<T>,
  shouldRetry: (e: unknown) => boolean,
  opts: { intervalMs: number; timeoutMs: number; onRetry?: (e: unknown) => void },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (!shouldRetry(e) || Date.now() + opts.intervalMs > deadline) throw e;
      opts.onRetry?.(e);
      await sleep(opts.intervalMs);
    }
  }
}
