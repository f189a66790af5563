/**
 * The EC2 client hardway talks to: the region from the inventory, credentials from the standard
 * AWS SDK chain (environment, profile, SSO, process, instance role), a bounded retry policy that
 * says what it retries, and AWS errors turned into one sentence that names the action.
 *
 * Two clients share one configuration. `send` retries throttling, timeouts and 5xx answers: use
 * it for reads and for calls that are idempotent (RunInstances and CreateRouteTable carry a
 * ClientToken). `sendOnce` retries only throttling, where EC2 guarantees nothing happened: use it
 * for creates that have no client token, so that a lost answer never makes a second VPC.
 */
import { EC2Client, type EC2ClientConfig } from '@aws-sdk/client-ec2';
import type { Logger } from '../log.ts';
import { InputError } from '../errors.ts';

/** For tests only: send every EC2 call to this URL (a loopback fake), never to AWS. */
export const ENDPOINT_ENV = 'HARDWAY_EC2_ENDPOINT';

type RetryStrategyV2 = Extract<NonNullable<EC2ClientConfig['retryStrategy']>, { acquireInitialRetryToken: unknown }>;
type RetryToken = Awaited<ReturnType<RetryStrategyV2['acquireInitialRetryToken']>>;
type RetryErrorInfo = Parameters<RetryStrategyV2['refreshRetryTokenForRetry']>[1];
type RetryErrorType = RetryErrorInfo['errorType'];

/** How hard to retry one EC2 call. */
export interface RetryOptions {
  /** Attempts per call, the first included. */
  maxAttempts: number;
  /** First backoff for throttling; other retryable errors start at a fifth of it. Doubles per retry. */
  baseDelayMs: number;
  maxDelayMs: number;
}

/** EC2 throttles per account and region; ten attempts ride out a burst of other tools' calls. */
export const DEFAULT_RETRY: RetryOptions = { maxAttempts: 10, baseDelayMs: 500, maxDelayMs: 20_000 };

/** What the clients are built from. */
export interface Ec2Options {
  region: string;
  log: Logger;
  /** Defaults to $HARDWAY_EC2_ENDPOINT (loopback only), else the SDK's regional endpoint. */
  endpoint?: string;
  retry?: Partial<RetryOptions>;
  /** Extra SDK client settings (tests pass static credentials here). */
  clientConfig?: Partial<EC2ClientConfig>;
}

/**
 * Retries what the SDK classifies as throttling (RequestLimitExceeded among others), transient or
 * server errors, with capped exponential backoff and full jitter; gives up after maxAttempts.
 */
export class BoundedRetry implements RetryStrategyV2 {
  constructor(
    private readonly opts: RetryOptions,
    private readonly retryable: readonly RetryErrorType[],
    private readonly onRetry: (info: RetryErrorInfo, attempt: number, delayMs: number) => void,
  ) {}

  async acquireInitialRetryToken(): Promise<RetryToken> {
    return token(0, 0);
  }

  async refreshRetryTokenForRetry(previous: RetryToken, info: RetryErrorInfo): Promise<RetryToken> {
    const attempt = previous.getRetryCount() + 1;
    if (!this.retryable.includes(info.errorType) || attempt >= this.opts.maxAttempts) throw new Error('no retry');
    const base = info.errorType === 'THROTTLING' ? this.opts.baseDelayMs : this.opts.baseDelayMs / 5;
    const ceiling = Math.min(this.opts.maxDelayMs, base * 2 ** (attempt - 1));
    const delay = Math.round(Math.random() * ceiling);
    this.onRetry(info, attempt, delay);
    return token(attempt, delay);
  }

  recordSuccess(): void {}
}

function token(count: number, delay: number): RetryToken {
  return { getRetryCount: () => count, getRetryDelay: () => delay };
}

/**
 * $HARDWAY_EC2_ENDPOINT, if set. It exists for tests, so it may only point at this machine: a
 * stray value must never send signed requests made with real credentials somewhere else.
 */
export function endpointFromEnv(): string | undefined {
  const value = process.env[ENDPOINT_ENV];
  if (!value) return undefined;
  let host: string;
  try {
    host = new URL(value).hostname;
  } catch {
    throw new InputError(`$${ENDPOINT_ENV}`, `"${value}" is not a URL`);
  }
  if (!['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host)) {
    throw new InputError(`$${ENDPOINT_ENV}`, `is for tests and may only point at this machine (127.0.0.1, localhost or ::1), not "${host}"; unset it to use AWS`);
  }
  return value;
}

/** The two clients and the region they talk to. */
export class Ec2 {
  readonly region: string;
  readonly endpoint: string | undefined;
  /** Reads and idempotent calls: retries throttling, timeouts and 5xx. */
  readonly send: EC2Client['send'];
  /** Creates without a client token: retries only throttling. */
  readonly sendOnce: EC2Client['send'];
  private readonly client: EC2Client;
  private readonly onceClient: EC2Client;

  constructor(opts: Ec2Options) {
    quietSdkNodeNotice();
    const retry = { ...DEFAULT_RETRY, ...opts.retry };
    const endpoint = opts.endpoint ?? endpointFromEnv();
    this.region = opts.region;
    this.endpoint = endpoint;
    const log = opts.log;
    const onRetry = (info: RetryErrorInfo, attempt: number, delay: number) => {
      const code = info.error ? awsErrorCode(info.error) : info.errorType;
      log.warn('aws', `${code ?? info.errorType}; retrying in ${formatMs(delay)} (attempt ${attempt + 1} of ${retry.maxAttempts})`);
    };
    const make = (retryable: RetryErrorType[]) =>
      new EC2Client({
        region: opts.region,
        ...(endpoint ? { endpoint } : {}),
        maxAttempts: retry.maxAttempts,
        retryStrategy: new BoundedRetry(retry, retryable, onRetry),
        ...opts.clientConfig,
      });
    this.client = make(['THROTTLING', 'TRANSIENT', 'SERVER_ERROR']);
    this.onceClient = make(['THROTTLING']);
    this.send = wrapSend(this.client, opts.region, log);
    this.sendOnce = wrapSend(this.onceClient, opts.region, log);
  }

  /** Resolves credentials through the SDK chain; throws one sentence when there are none. */
  async ensureCredentials(): Promise<void> {
    try {
      const provider = this.client.config.credentials as unknown as () => Promise<{ accessKeyId?: string }>;
      const creds = await provider();
      if (!creds?.accessKeyId) throw Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' });
    } catch (e) {
      throw new AwsError(credentialsMessage(e), 'CredentialsProviderError', undefined);
    }
  }

  destroy(): void {
    this.client.destroy();
    this.onceClient.destroy();
  }
}

/** An EC2 call that failed, as one sentence: `CreateVpc: VpcLimitExceeded: ...`. */
export class AwsError extends Error {
  readonly code: string | undefined;
  readonly action: string | undefined;
  constructor(message: string, code: string | undefined, action: string | undefined) {
    super(message);
    this.name = 'AwsError';
    this.code = code;
    this.action = action;
  }
}

/** The EC2 error code (`DependencyViolation`, `InvalidVpcID.NotFound`, ...) of an SDK error. */
export function awsErrorCode(e: unknown): string | undefined {
  if (e instanceof AwsError) return e.code;
  const err = e as { Code?: unknown; code?: unknown; name?: unknown } | undefined;
  for (const v of [err?.Code, err?.code, err?.name]) if (typeof v === 'string' && v !== 'Error') return v;
  return undefined;
}

/** True when `e` carries `code`, or a code ending in `.NotFound` when code is `NotFound`. */
export function isAwsCode(e: unknown, ...codes: string[]): boolean {
  const c = awsErrorCode(e);
  if (c === undefined) return false;
  return codes.some((want) => c === want || (want === 'NotFound' && c.endsWith('.NotFound')));
}

function wrapSend(client: EC2Client, region: string, log: Logger): EC2Client['send'] {
  const send = async (command: { input: object; constructor: { name: string } }, ...rest: unknown[]) => {
    const action = command.constructor.name.replace(/Command$/, '');
    log.command('aws', cliLine(action, region, command.input));
    try {
      return await (client.send as (c: unknown, ...r: unknown[]) => Promise<unknown>)(command, ...rest);
    } catch (e) {
      throw toAwsError(e, action);
    }
  };
  return send as unknown as EC2Client['send'];
}

/** Turns an SDK error into an AwsError with one sentence; keeps the original as `cause`. */
export function toAwsError(e: unknown, action: string): AwsError {
  if (e instanceof AwsError) return e;
  const err = e as Error & { $metadata?: { httpStatusCode?: number } };
  if (err?.name === 'CredentialsProviderError') return new AwsError(credentialsMessage(e), 'CredentialsProviderError', action);
  const code = awsErrorCode(e);
  const message = (err?.message ?? String(e)).replace(/\s+/g, ' ').trim();
  let text = `${action}: ${code && code !== message ? `${code}: ` : ''}${message}`;
  if (code === 'AuthFailure') text += ' (AWS did not accept the credentials: check that the access key is active and the clock is right)';
  if (code === 'UnauthorizedOperation') text += ` (the credentials may not call ec2:${action}; run with --check to list every missing permission)`;
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string' && !code?.includes('.')) {
    const sys = (err as { code: string }).code;
    if (/^E[A-Z]+$/.test(sys)) text = `${action}: cannot reach EC2 (${sys}): ${message}`;
  }
  const out = new AwsError(text, code, action);
  (out as Error & { cause?: unknown }).cause = e;
  return out;
}

function credentialsMessage(e: unknown): string {
  const message = (e as Error)?.message ?? String(e);
  const profile = process.env.AWS_PROFILE;
  if (/Could not load credentials from any providers/i.test(message)) {
    return profile
      ? `no AWS credentials found for profile "${profile}": check ~/.aws/config and ~/.aws/credentials, or run "aws sso login --profile ${profile}" for an SSO profile`
      : 'no AWS credentials found: set AWS_PROFILE to a configured profile (run "aws sso login" first for SSO), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY';
  }
  return `AWS credentials could not be loaded: ${message.replace(/\s+/g, ' ').trim()}`;
}

/** The AWS CLI command equivalent to an API call, for --verbose: copyable, shows every field. */
export function cliLine(action: string, region: string, input: object): string {
  const kebab = action.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
  const json = JSON.stringify(input, (_k, v: unknown) => {
    if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer') return Buffer.from((v as { data: number[] }).data).toString('base64');
    if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
    return v;
  });
  return `aws ec2 ${kebab} --region ${region}${json && json !== '{}' ? ` --cli-input-json '${json.replace(/'/g, `'\\''`)}'` : ''}`;
}

/** `1.5s`, `300ms`, `2m`: for log lines. */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms < 120_000) return `${Math.round(ms / 100) / 10}s`;
  return `${Math.round(ms / 60_000)}m`;
}

/**
 * The region the AWS SDK's own chain picks when the inventory names none: AWS_REGION, then the
 * profile's `region` in ~/.aws/config. Throws one sentence when neither is set.
 */
export async function regionFromSdkChain(source: string): Promise<string> {
  quietSdkNodeNotice();
  const probe = new EC2Client({});
  try {
    const region = await probe.config.region();
    if (region) return region;
  } catch {
    /* no region anywhere: said below */
  } finally {
    probe.destroy();
  }
  throw new InputError(`${source}: aws.region`, 'no AWS region: set aws.region in the inventory, or AWS_REGION, or region in your AWS profile');
}

/**
 * hardway supports Node 20 by design; the SDK's notice about its own future releases is not
 * something a user of this tool can act on. An explicit setting is respected.
 */
function quietSdkNodeNotice(): void {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
}
