//! Where Relais may send requests: only to public unicast addresses (none of the IANA
//! special-purpose blocks, in IPv4 or in any IPv6 form that reaches one) unless the
//! operator allows private targets, checked both when a URL is registered and when its
//! name is resolved for each request (see [`super::client`]), so a DNS answer cannot be
//! switched afterwards.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(segments: [u16; 8], prefix: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix)
}

/// Every block of the IANA IPv4 Special-Purpose Address Registry, whatever its "globally
/// reachable" flag (an anycast relay or a benchmarking net is no tenant's endpoint
/// either), and multicast.
const SPECIAL_V4: [Ipv4Net; 18] = [
    v4(0, 0, 0, 0, 8),       // "this network", 0.0.0.0/32 included
    v4(10, 0, 0, 0, 8),      // private use
    v4(100, 64, 0, 0, 10),   // shared address space (carrier-grade NAT)
    v4(127, 0, 0, 0, 8),     // loopback
    v4(169, 254, 0, 0, 16),  // link local
    v4(172, 16, 0, 0, 12),   // private use
    v4(192, 0, 0, 0, 24),    // IETF protocol assignments (DS-Lite, PCP, TURN, NAT64 discovery)
    v4(192, 0, 2, 0, 24),    // documentation (TEST-NET-1)
    v4(192, 31, 196, 0, 24), // AS112-v4
    v4(192, 52, 193, 0, 24), // AMT
    v4(192, 88, 99, 0, 24),  // deprecated 6to4 relay anycast, 6a44 relay
    v4(192, 168, 0, 0, 16),  // private use
    v4(192, 175, 48, 0, 24), // direct delegation AS112 service
    v4(198, 18, 0, 0, 15),   // benchmarking
    v4(198, 51, 100, 0, 24), // documentation (TEST-NET-2)
    v4(203, 0, 113, 0, 24),  // documentation (TEST-NET-3)
    v4(224, 0, 0, 0, 4),     // multicast
    v4(240, 0, 0, 0, 4),     // reserved, and 255.255.255.255 limited broadcast
];

/// Global unicast, the only IPv6 space IANA allocates to networks. Everything outside it
/// is refused, which covers these entries of the IPv6 Special-Purpose Address Registry:
/// `::/128`, `::1/128`, the IPv4-compatible `::/96` and IPv4-translated `::ffff:0:0:0/96`
/// forms, `64:ff9b:1::/48` (local-use NAT64), `100::/64` and `100:0:0:1::/64` (discard,
/// dummy), `5f00::/16` (SRv6 SIDs), `fc00::/7` (unique local), `fe80::/10` (link-local),
/// and beyond the registry `fec0::/10` (site-local) and `ff00::/8` (multicast).
/// `::ffff:0:0/96` and `64:ff9b::/96` stand for an IPv4 address: see [`routed_ipv4`].
const GLOBAL_UNICAST_V6: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// The registry's blocks inside global unicast.
const SPECIAL_V6: [Ipv6Net; 4] = [
    // IETF protocol assignments: Teredo 2001::/32, benchmarking, AMT, AS112-v6, ORCHID,
    // drone remote ID, DNS-SD service registration.
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48), // direct delegation AS112 service
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),     // documentation
];

const NAT64_WELL_KNOWN: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
const SIX_TO_FOUR: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

/// The IPv4 address a packet to `ip` ends up at, for the embeddings that route by it:
/// IPv4-mapped `::ffff:a.b.c.d` (a dual-stack socket connects to the IPv4 address),
/// well-known NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:aabb:ccdd::/48`.
fn routed_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = ip.segments();
    let pair =
        |hi: usize| Ipv4Addr::from((u32::from(segments[hi]) << 16) | u32::from(segments[hi + 1]));
    if let Some(mapped) = ip.to_ipv4_mapped() {
        Some(mapped)
    } else if NAT64_WELL_KNOWN.contains(&ip) {
        Some(pair(6))
    } else if SIX_TO_FOUR.contains(&ip) {
        Some(pair(1))
    } else {
        None
    }
}

/// Whether `ip` is anything but a public unicast address: private, loopback, link-local,
/// documentation, reserved, multicast, or an IPv6 form of such an IPv4 address.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => SPECIAL_V4.iter().any(|net| net.contains(&ip)),
        IpAddr::V6(ip) => match routed_ipv4(ip) {
            Some(embedded) => is_private(IpAddr::V4(embedded)),
            None => {
                !GLOBAL_UNICAST_V6.contains(&ip) || SPECIAL_V6.iter().any(|net| net.contains(&ip))
            }
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("`{0}` resolves to a private, loopback, link-local or other special-purpose address; such targets are refused unless RELAIS_ALLOW_PRIVATE_TARGETS is set")]
    Private(String),
}

/// Checks a URL's host at registration. A name that does not resolve yet is accepted:
/// the resolver of every delivery applies the same rule when it does.
pub async fn check_url(url: &url::Url, allow_private: bool) -> Result<(), TargetError> {
    if allow_private {
        return Ok(());
    }
    let host = url.host_str().unwrap_or_default().to_owned();
    let addrs: Vec<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        _ => match tokio::net::lookup_host((
            host.as_str(),
            url.port_or_known_default().unwrap_or(443),
        ))
        .await
        {
            Ok(addrs) => addrs.map(|a| a.ip()).collect(),
            Err(_) => return Ok(()),
        },
    };
    if addrs.iter().any(|ip| is_private(*ip)) {
        return Err(TargetError::Private(host));
    }
    Ok(())
}

/// A URL whose host is an IP literal never reaches the resolver: check it directly.
pub fn literal_is_private(url: &str) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Ipv4(ip)) => is_private(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_private(IpAddr::V6(ip)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    /// One example per block of both IANA special-purpose registries (and the blocks
    /// beyond them that are no place for an endpoint), and every IPv6 form of an IPv4
    /// address that is not public.
    const REFUSED: &[(&str, &str)] = &[
        ("0.0.0.0/8 this network", "0.1.2.3"),
        ("0.0.0.0/32 this host", "0.0.0.0"),
        ("10.0.0.0/8 private use", "10.255.0.1"),
        ("100.64.0.0/10 shared address space", "100.127.255.254"),
        ("127.0.0.0/8 loopback", "127.3.2.1"),
        ("169.254.0.0/16 link local", "169.254.169.254"),
        ("172.16.0.0/12 private use", "172.31.255.255"),
        ("192.0.0.0/24 IETF protocol assignments", "192.0.0.1"),
        ("192.0.0.0/29 IPv4 service continuity", "192.0.0.7"),
        ("192.0.0.8/32 dummy address", "192.0.0.8"),
        ("192.0.0.9/32 PCP anycast", "192.0.0.9"),
        ("192.0.0.10/32 TURN anycast", "192.0.0.10"),
        ("192.0.0.170/32 NAT64 discovery", "192.0.0.170"),
        ("192.0.0.171/32 NAT64 discovery", "192.0.0.171"),
        ("192.0.2.0/24 documentation", "192.0.2.10"),
        ("192.31.196.0/24 AS112-v4", "192.31.196.1"),
        ("192.52.193.0/24 AMT", "192.52.193.1"),
        ("192.88.99.0/24 6to4 relay anycast", "192.88.99.1"),
        ("192.88.99.2/32 6a44 relay anycast", "192.88.99.2"),
        ("192.168.0.0/16 private use", "192.168.1.1"),
        ("192.175.48.0/24 AS112 direct delegation", "192.175.48.6"),
        ("198.18.0.0/15 benchmarking", "198.19.255.1"),
        ("198.51.100.0/24 documentation", "198.51.100.7"),
        ("203.0.113.0/24 documentation", "203.0.113.9"),
        ("224.0.0.0/4 multicast", "239.255.255.250"),
        ("240.0.0.0/4 reserved", "240.0.0.1"),
        ("255.255.255.255/32 limited broadcast", "255.255.255.255"),
        ("::1/128 loopback", "::1"),
        ("::/128 unspecified", "::"),
        ("::ffff:0:0/96 IPv4-mapped loopback", "::ffff:127.0.0.1"),
        ("::ffff:0:0/96 IPv4-mapped private", "::ffff:10.0.0.1"),
        ("::/96 IPv4-compatible, dotted", "::127.0.0.1"),
        ("::/96 IPv4-compatible, hex", "::7f00:1"),
        (
            "::/96 IPv4-compatible, even of a public address",
            "::8.8.8.8",
        ),
        ("::ffff:0:0:0/96 IPv4-translated", "::ffff:0:7f00:1"),
        ("64:ff9b::/96 NAT64 of loopback", "64:ff9b::127.0.0.1"),
        ("64:ff9b::/96 NAT64 of private use", "64:ff9b::a00:1"),
        (
            "64:ff9b::/96 NAT64 of link local",
            "64:ff9b::169.254.169.254",
        ),
        ("64:ff9b:1::/48 local-use NAT64", "64:ff9b:1::a00:1"),
        (
            "64:ff9b:1::/48 local-use NAT64, public inside",
            "64:ff9b:1:808:8:800::",
        ),
        ("100::/64 discard only", "100::1"),
        ("100:0:0:1::/64 dummy prefix", "100:0:0:1::1"),
        ("2001::/23 IETF protocol assignments", "2001:1::1"),
        ("2001::/32 Teredo", "2001::1"),
        (
            "2001::/32 Teredo with a public server",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ),
        ("2001:2::/48 benchmarking", "2001:2::1"),
        ("2001:3::/32 AMT", "2001:3::1"),
        ("2001:4:112::/48 AS112-v6", "2001:4:112::1"),
        ("2001:20::/28 ORCHIDv2", "2001:20::1"),
        ("2001:30::/28 drone remote ID", "2001:30::1"),
        ("2001:db8::/32 documentation", "2001:db8::1"),
        ("2002::/16 6to4 of loopback", "2002:7f00:1::1"),
        ("2002::/16 6to4 of private use", "2002:c0a8:101::1"),
        ("2002::/16 6to4 of this network", "2002::1"),
        (
            "2620:4f:8000::/48 AS112 direct delegation",
            "2620:4f:8000::1",
        ),
        ("3fff::/20 documentation", "3fff:fff::1"),
        ("5f00::/16 SRv6 SIDs", "5f00::1"),
        ("fc00::/7 unique local", "fd12:3456::1"),
        ("fe80::/10 link local", "fe80::1"),
        ("fec0::/10 site local", "fec0::1"),
        ("ff00::/8 multicast", "ff02::1"),
        ("4000::/3 unallocated", "4000::1"),
    ];

    const PUBLIC: &[(&str, &str)] = &[
        ("IPv4", "93.184.216.34"),
        ("IPv4 next to 192.0.0.0/24", "192.0.1.1"),
        ("IPv4 next to 198.18.0.0/15", "198.20.0.1"),
        ("IPv4 below 240.0.0.0/4", "223.255.255.254"),
        ("IPv6", "2606:4700::1111"),
        ("IPv6 next to 2001::/23", "2001:200::1"),
        ("IPv4-mapped public", "::ffff:8.8.8.8"),
        ("NAT64 of a public IPv4", "64:ff9b::808:808"),
        ("6to4 of a public IPv4", "2002:808:808::1"),
    ];

    #[test]
    fn every_special_purpose_block_is_refused_and_public_addresses_pass() {
        for (block, example) in REFUSED {
            let ip: IpAddr = example.parse().unwrap();
            assert!(is_private(ip), "{block}: {example} must be refused");
        }
        for (what, example) in PUBLIC {
            let ip: IpAddr = example.parse().unwrap();
            assert!(!is_private(ip), "{what}: {example} must pass");
        }
    }

    #[test]
    fn numeric_host_forms_are_read_as_the_address_they_name() {
        // The URL standard reads these as 127.0.0.1, as browsers and HTTP clients do.
        for url in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://0x7f000001/",
            "http://127.1/",
            "http://[::ffff:7f00:1]/",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/",
        ] {
            assert!(literal_is_private(url), "{url}");
        }
        let parsed = url::Url::parse("http://0x7f.1/").unwrap();
        assert_eq!(parsed.host(), Some(url::Host::Ipv4(Ipv4Addr::LOCALHOST)));
        assert!(!literal_is_private("http://0x5db8d822/"), "93.184.216.34");
    }

    #[tokio::test]
    async fn registration_refuses_every_form_of_a_special_address() {
        for url in [
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::10.0.0.1]/",
            "http://[2002:a00:1::1]/",
            "http://[2001::1]/",
            "http://198.18.0.1/",
        ] {
            let parsed = url::Url::parse(url).unwrap();
            assert!(check_url(&parsed, false).await.is_err(), "{url}");
            assert!(check_url(&parsed, true).await.is_ok(), "{url}");
        }
        let public = url::Url::parse("http://[64:ff9b::8.8.8.8]/").unwrap();
        assert!(check_url(&public, false).await.is_ok());
    }

    #[tokio::test]
    async fn registration_refuses_private_targets_unless_allowed() {
        let local = url::Url::parse("http://127.0.0.1:9/hook").unwrap();
        assert!(check_url(&local, false).await.is_err());
        assert!(check_url(&local, true).await.is_ok());
        let named = url::Url::parse("http://localhost:9/hook").unwrap();
        assert!(check_url(&named, false).await.is_err());
        assert!(literal_is_private("http://[::1]:8080/x"));
        assert!(!literal_is_private("https://example.com/x"));
    }
}
