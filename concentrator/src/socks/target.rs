//! Which addresses a SOCKS5 request may be connected to, and the reply for a failed
//! connect. Pure.

use std::io;
use std::net::SocketAddr;

use crate::policy::Class;

use super::wire::ReplyCode;

/// The resolved addresses the policy allows, in order (at most `max`), or the class of
/// the first refused one when it allows none. An empty input is `Ok(vec![])`.
pub fn allowed(
    resolved: &[SocketAddr],
    max: usize,
    check: impl Fn(SocketAddr) -> Result<(), Class>,
) -> Result<Vec<SocketAddr>, Class> {
    let mut ok = Vec::new();
    let mut first_refusal = None;
    for &addr in resolved {
        match check(addr) {
            Ok(()) if ok.len() < max => ok.push(addr),
            Ok(()) => {}
            Err(class) => {
                first_refusal.get_or_insert(class);
            }
        }
    }
    match (ok.is_empty(), first_refusal) {
        (true, Some(class)) => Err(class),
        _ => Ok(ok),
    }
}

/// The RFC 1928 reply code for a failed connect to the destination.
pub fn connect_error_reply(e: &io::Error) -> ReplyCode {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => ReplyCode::ConnectionRefused,
        Some(libc::ENETUNREACH | libc::ENETDOWN) => ReplyCode::NetworkUnreachable,
        Some(libc::EHOSTUNREACH | libc::EHOSTDOWN) => ReplyCode::HostUnreachable,
        Some(libc::ETIMEDOUT) => ReplyCode::HostUnreachable,
        _ if e.kind() == io::ErrorKind::ConnectionRefused => ReplyCode::ConnectionRefused,
        _ if e.kind() == io::ErrorKind::TimedOut => ReplyCode::HostUnreachable,
        _ => ReplyCode::GeneralFailure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn private_10(a: SocketAddr) -> Result<(), Class> {
        match a.ip() {
            std::net::IpAddr::V4(v4) if v4.octets()[0] == 10 => Err(Class::Private),
            _ => Ok(()),
        }
    }

    #[test]
    fn every_address_is_checked() {
        let only_private = [addr("10.0.0.1:80"), addr("10.0.0.2:80")];
        assert_eq!(allowed(&only_private, 4, private_10), Err(Class::Private));
        let mixed = [
            addr("10.0.0.1:80"),
            addr("192.0.2.1:80"),
            addr("10.0.0.2:80"),
        ];
        assert_eq!(
            allowed(&mixed, 4, private_10),
            Ok(vec![addr("192.0.2.1:80")])
        );
        let many = [
            addr("192.0.2.1:80"),
            addr("192.0.2.2:80"),
            addr("192.0.2.3:80"),
        ];
        assert_eq!(allowed(&many, 2, private_10).unwrap().len(), 2);
        assert_eq!(allowed(&[], 2, private_10), Ok(vec![]));
    }

    #[test]
    fn connect_errors_map_to_replies() {
        let code = |errno| connect_error_reply(&io::Error::from_raw_os_error(errno)).code();
        assert_eq!(code(libc::ECONNREFUSED), 0x05);
        assert_eq!(code(libc::ENETUNREACH), 0x03);
        assert_eq!(code(libc::EHOSTUNREACH), 0x04);
        assert_eq!(code(libc::ETIMEDOUT), 0x04);
        assert_eq!(code(libc::EADDRNOTAVAIL), 0x01);
    }
}
