//! Where Relais may send requests: never to private, loopback or link-local addresses
//! unless the operator allows it, checked both when a URL is registered and when its
//! name is resolved for each request (see [`super::client`]), so a DNS answer cannot be
//! switched afterwards.

use std::net::IpAddr;

pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                // 100.64.0.0/10, carrier-grade NAT
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64)
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("`{0}` resolves to a private, loopback or link-local address; such targets are refused unless RELAIS_ALLOW_PRIVATE_TARGETS is set")]
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
