/**
 * The addresses a node advertises in `/api/gateways` (docs/deploy.md "Public addresses"): `SYNCHAT_PUBLIC_URL`
 * (and `SYNCHAT_PUBLIC_TCP_URL`) when set, else the listen address; a wildcard listen address (`0.0.0.0`, `::`) is
 * no address a client can dial, so such a node lists the Host its caller reached, or else this machine's name.
 */
import { hostname } from 'node:os';
import type { GatewayInfo } from '../service/index.ts';
import { WS_PATH } from '../transports/ws/ws-transport.ts';
import type { Config } from './config.ts';

/** Listen addresses that mean "every interface". */
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]', '::0', '0:0:0:0:0:0:0:0']);

/** A Host header value we are willing to echo into URLs: a name or IPv4 address, or a bracketed IPv6 one, and a port. */
const HOST_HEADER = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$/;

/** True when `host` is a wildcard listen address. */
export function isWildcardHost(host: string): boolean {
  return WILDCARD_HOSTS.has(host);
}

function bracketed(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** `name:port` → `name`; `[v6]:port` → `[v6]`. */
function hostnameOf(hostAndPort: string): string {
  if (hostAndPort.startsWith('[')) return hostAndPort.slice(0, hostAndPort.indexOf(']') + 1);
  const colon = hostAndPort.lastIndexOf(':');
  return colon < 0 ? hostAndPort : hostAndPort.slice(0, colon);
}

/**
 * The gateway directory for `/api/gateways`. With TLS (`SYNCHAT_TLS_CERT`) the URLs are `tls://`, `wss://` and
 * `https://`; the transport names stay `tcp`, `ws` and `http` (PROTOCOL.md). The returned function takes the Host
 * the caller reached (HTTP), used only on a wildcard listen address without a public URL.
 */
export function gatewayDirectory(
  config: Pick<Config, 'host' | 'tlsCert'> & Partial<Pick<Config, 'publicUrl' | 'publicTcpUrl'>>,
  ports: () => { httpPort: number; tcpPort: number },
): (requestHost?: string) => GatewayInfo[] {
  const s = config.tlsCert ? 's' : '';
  if (config.publicUrl) {
    const base = config.publicUrl.replace(/\/+$/, '');
    const url = new URL(base);
    const isTls = url.protocol === 'https:';
    const path = url.pathname.replace(/\/+$/, '');
    return () => [
      // A TLS-terminating proxy in front (docs/deploy.md) ends TLS for the TCP port too: the public scheme decides.
      { transport: 'tcp', url: config.publicTcpUrl || `${isTls ? 'tls' : 'tcp'}://${url.hostname}:${ports().tcpPort}` },
      { transport: 'ws', url: `ws${isTls ? 's' : ''}://${url.host}${path}${WS_PATH}` },
      { transport: 'http', url: base },
    ];
  }
  const isWildcard = isWildcardHost(config.host);
  return (requestHost) => {
    const { httpPort, tcpPort } = ports();
    let httpHost = `${bracketed(config.host)}:${httpPort}`;
    let tcpHost = bracketed(config.host);
    if (isWildcard) {
      // The Host the client reached names this node as that client sees it (as given: without a port it reached
      // the scheme's default one, through a proxy); without one, this machine's name.
      const reached = requestHost && HOST_HEADER.test(requestHost) ? requestHost : undefined;
      httpHost = reached ?? `${hostname()}:${httpPort}`;
      tcpHost = reached ? hostnameOf(reached) : hostname();
    }
    return [
      { transport: 'tcp', url: config.publicTcpUrl || `${s ? 'tls' : 'tcp'}://${tcpHost}:${tcpPort}` },
      { transport: 'ws', url: `ws${s}://${httpHost}${WS_PATH}` },
      { transport: 'http', url: `http${s}://${httpHost}` },
    ];
  };
}
