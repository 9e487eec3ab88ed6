/**
 * Outbound webhooks must not become a way into our own network (SSRF): a tenant could register
 * http://169.254.169.254/ (cloud metadata), http://10.0.0.5:6379/ or a name that resolves there. An
 * endpoint is checked when it is registered (every address its name resolves to), and again at every
 * send: the HTTP request resolves the name through guardedLookup, which refuses an internal address, so a
 * name re-pointed after registration (DNS rebinding) is caught on the connection itself. Redirects are never followed.
 * WEBHOOKS_ALLOW_PRIVATE=true (tests, on-premises; refused in production) turns the checks off.
 */
import type { LookupAddress, LookupOptions } from 'node:dns'
import { lookup } from 'node:dns/promises'
import { BlockList, isIP } from 'node:net'

const internal = new BlockList()
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this" network
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const)
  internal.addSubnet(net, prefix, 'ipv4')
for (const [net, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128],
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
  ['64:ff9b::', 96], // NAT64 (can reach any v4 address)
  ['2001:db8::', 32], // documentation
] as const)
  internal.addSubnet(net, prefix, 'ipv6')

/** Whether an IP address (v4 or v6, v4-mapped v6 included) is internal: private, loopback, link-local, unique-local… */
export function isInternalAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return isInternalAddress(mapped[1]!)
  const family = isIP(address)
  if (family === 4) return internal.check(address, 'ipv4')
  if (family === 6) return internal.check(address, 'ipv6')
  return true // not an address at all: refuse
}

export class ForbiddenTarget extends Error {
  override name = 'ForbiddenTarget'
  constructor(
    readonly host: string,
    readonly address: string | undefined,
  ) {
    super(address ? `${host} resolves to ${address}, an internal address` : `${host} does not resolve`)
  }
}

const hostOf = (url: URL) => url.hostname.replace(/^\[|\]$/g, '')

/** Registration-time check: every address the URL's host resolves to must be public (throws ForbiddenTarget). */
export async function assertPublicTarget(url: URL, allowPrivate: boolean): Promise<void> {
  if (allowPrivate) return
  const host = hostOf(url)
  if (isIP(host)) {
    if (isInternalAddress(host)) throw new ForbiddenTarget(host, host)
    return
  }
  let addresses: LookupAddress[]
  try {
    addresses = await lookup(host, { all: true, verbatim: true })
  } catch {
    throw new ForbiddenTarget(host, undefined)
  }
  if (addresses.length === 0) throw new ForbiddenTarget(host, undefined)
  const bad = addresses.find((a) => isInternalAddress(a.address))
  if (bad) throw new ForbiddenTarget(host, bad.address)
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

/**
 * A `lookup` for http.request: resolves like dns.lookup, then refuses the connection when any address is
 * internal. This is the send-time check: the address connected to is the one checked.
 */
export function guardedLookup(allowPrivate: boolean) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback) => {
    lookup(hostname, { ...options, all: true, verbatim: true })
      .then((addresses) => {
        const bad = allowPrivate ? undefined : addresses.find((a) => isInternalAddress(a.address))
        if (bad) return callback(new ForbiddenTarget(hostname, bad.address) as NodeJS.ErrnoException, '', 0)
        if (options.all) return callback(null, addresses)
        const first = addresses[0]
        if (!first) return callback(new ForbiddenTarget(hostname, undefined) as NodeJS.ErrnoException, '', 0)
        callback(null, first.address, first.family)
      })
      .catch((err: NodeJS.ErrnoException) => callback(err, '', 0))
  }
}

/** The literal-IP half of the send-time check (http.request does not call lookup for an IP host). */
export function assertLiteralAllowed(url: URL, allowPrivate: boolean): void {
  const host = hostOf(url)
  if (!allowPrivate && isIP(host) && isInternalAddress(host)) throw new ForbiddenTarget(host, host)
}
