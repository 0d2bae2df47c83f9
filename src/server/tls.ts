/**
 * Native TLS from `SYNCHAT_TLS_CERT` / `SYNCHAT_TLS_KEY` (docs/deploy.md "Native TLS"): the PEM files are read and
 * checked once per process at start, and the same settings serve HTTPS + WSS on the HTTP port and TLS on the TCP
 * port.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext, type TlsOptions } from 'node:tls';
import { ConfigError, envName, type Config } from './config.ts';

/**
 * TLS 1.2 is the oldest version without known practical attacks on its modern suites (RFC 8996 retired 1.0 and
 * 1.1); Node's defaults cover the rest (ECDHE suites only, server cipher order).
 */
const TLS_MIN_VERSION = 'TLSv1.2';

function readPem(config: Pick<Config, 'tlsCert' | 'tlsKey'>, key: 'tlsCert' | 'tlsKey'): Buffer {
  try {
    return readFileSync(config[key]);
  } catch (err) {
    throw new ConfigError(`${envName(key)}: cannot read ${config[key]}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * The TLS settings of this server's listeners (HTTPS and the TCP port alike), or undefined when it serves plain
 * HTTP/TCP. Throws ConfigError naming the variable when a file cannot be read, or when the pair is not a usable
 * certificate and key (a key that does not match, a file that is not PEM).
 */
export function loadTls(config: Pick<Config, 'tlsCert' | 'tlsKey' | 'authTimeoutMs'>): TlsOptions | undefined {
  if (!config.tlsCert && !config.tlsKey) return undefined;
  const tls: TlsOptions = {
    cert: readPem(config, 'tlsCert'),
    key: readPem(config, 'tlsKey'),
    minVersion: TLS_MIN_VERSION,
    // Node's default is 120 s: a peer that opens a socket and never finishes its handshake would hold it that long,
    // before any of our timers (auth, HTTP headers) starts. One that means well needs a few round trips.
    handshakeTimeout: config.authTimeoutMs,
  };
  try {
    createSecureContext(tls);
  } catch (err) {
    throw new ConfigError(`${envName('tlsCert')} / ${envName('tlsKey')}: not a usable certificate and key: ${(err as Error).message}`);
  }
  return tls;
}
