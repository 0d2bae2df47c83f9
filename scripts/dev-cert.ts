/**
 * `npm run dev-cert [-- --dir ./data/tls]`: a self-signed certificate and its key for local TLS (localhost,
 * 127.0.0.1 and ::1), written to `<dir>/cert.pem` and `<dir>/key.pem` (the key 0600), then the two settings that
 * use them. For development only: a browser warns about the certificate until it is trusted, and Node clients
 * pass it as `ca` (docs/deploy.md "Local TLS"). The tests make theirs with {@link makeDevCert} too, so no private
 * key is ever committed.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { generate } from 'selfsigned';

/** A PEM certificate and its PEM private key. */
export interface DevCert {
  cert: string;
  key: string;
}

/** How long a development certificate is valid: 825 days, the longest that Apple's platforms accept for a TLS server. */
const VALID_DAYS = 825;

/** Makes a self-signed P-256 certificate for localhost, 127.0.0.1 and ::1 (and `hosts`, DNS names or addresses). */
export async function makeDevCert(hosts: string[] = []): Promise<DevCert> {
  const names = [...new Set(['localhost', '127.0.0.1', '::1', ...hosts])];
  const now = new Date();
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: now,
    notAfterDate: new Date(now.getTime() + VALID_DAYS * 24 * 3600_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: names.map((n) => (/^[\d.]+$|:/.test(n) ? { type: 7 as const, ip: n } : { type: 2 as const, value: n })) },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/** Writes `cert.pem` and `key.pem` (owner-only) into `dir`; returns their paths. */
export async function writeDevCert(dir: string, hosts: string[] = []): Promise<{ certFile: string; keyFile: string }> {
  const { cert, key } = await makeDevCert(hosts);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  writeFileSync(certFile, cert);
  writeFileSync(keyFile, key, { mode: 0o600 });
  chmodSync(keyFile, 0o600);
  return { certFile, keyFile };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { dir: { type: 'string', default: './data/tls' }, host: { type: 'string', multiple: true, default: [] } } });
  const { certFile, keyFile } = await writeDevCert(resolve(values.dir), values.host);
  console.log(`Wrote ${certFile} and ${keyFile} (self-signed, for localhost, 127.0.0.1 and ::1${values.host.length ? ', ' + values.host.join(', ') : ''}).`);
  console.log('Start the server over TLS with:');
  console.log(`SYNCHAT_TLS_CERT=${certFile}`);
  console.log(`SYNCHAT_TLS_KEY=${keyFile}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err) => {
    console.error('dev-cert:', err?.message ?? err);
    process.exit(1);
  });
}
