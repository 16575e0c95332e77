//! Free loopback ports for test clusters and the chaos runner.
//!
//! Ports are taken below the kernel's ephemeral range. `bind(0)` and every outgoing
//! connection draw from that range, so a port found there by binding port 0 and letting
//! go can be taken by anyone's next connection before our node binds it. Below the range
//! only an explicit bind can take it.

use std::net::{SocketAddr, TcpListener};

/// The kernel's ephemeral range (Linux), or the usual default.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|p| p.parse::<u16>().ok());
            Some((it.next()?, it.next()?))
        })
        .unwrap_or((32768, 60999))
}

/// `n` distinct ports on 127.0.0.1 that were free a moment ago, outside the ephemeral
/// range when there is room below it (else from the kernel, as a last resort).
pub fn free_loopback_ports(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    let (lo, _) = ephemeral_range();
    let (first, last) = (10_000u16, lo.saturating_sub(1));
    let mut held = Vec::with_capacity(n);
    if last > first {
        // Start somewhere different in every process, so concurrent runs rarely meet.
        let span = u32::from(last - first);
        let seed = std::process::id().wrapping_mul(2_654_435_761)
            ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        for i in 0..span {
            if held.len() == n {
                break;
            }
            let port = first + ((seed.wrapping_add(i)) % span) as u16;
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                held.push(l);
            }
        }
    }
    while held.len() < n {
        held.push(TcpListener::bind("127.0.0.1:0")?);
    }
    held.iter().map(|l| l.local_addr()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports = free_loopback_ports(20).unwrap();
        let mut seen: Vec<u16> = ports.iter().map(|a| a.port()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 20);
        let (lo, _) = ephemeral_range();
        assert!(seen.iter().all(|&p| p < lo), "{seen:?} not below {lo}");
        for a in ports {
            TcpListener::bind(a).expect("still free");
        }
    }
}
