//! Tunnel addresses: each shard leases from its own slice of the network.
//!
//! Address `a` belongs to shard `u32(a) % shards`. The TUN steering program
//! (`sys::bpf`) computes exactly this from a packet's destination, so a
//! packet for a lease is read on the queue of the shard that owns the lease.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The rule shared with the steering program.
pub fn owner_shard(addr: Ipv4Addr, shards: usize) -> usize {
    (u32::from(addr) % shards as u32) as usize
}

/// One shard's slice: free addresses, lowest first.
#[derive(Debug)]
pub struct ShardPool {
    free: BTreeSet<u32>,
    size: usize,
}

impl ShardPool {
    /// Hosts of `network` owned by `shard`, minus the server's own address.
    pub fn new(network: Ipv4Net, server: Ipv4Addr, shard: usize, shards: usize) -> Self {
        let free: BTreeSet<u32> = network
            .hosts()
            .filter(|a| *a != server && owner_shard(*a, shards) == shard)
            .map(u32::from)
            .collect();
        let size = free.len();
        Self { free, size }
    }

    /// Leases `wanted` if it is free here, else the lowest free address.
    pub fn lease(&mut self, wanted: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(w) = wanted.map(u32::from) {
            if self.free.remove(&w) {
                return Some(w.into());
            }
        }
        self.free.pop_first().map(Ipv4Addr::from)
    }

    /// Takes exactly `addr` (an `explicit-ipv4`); false if it is in use or
    /// not this shard's.
    pub fn take(&mut self, addr: Ipv4Addr) -> bool {
        self.free.remove(&u32::from(addr))
    }

    pub fn release(&mut self, addr: Ipv4Addr) {
        self.free.insert(u32::from(addr));
    }

    pub fn free(&self) -> usize {
        self.free.len()
    }

    pub fn size(&self) -> usize {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Ipv4Net {
        "192.168.100.0/24".parse().unwrap()
    }

    #[test]
    fn slices_partition_the_hosts() {
        let server = Ipv4Addr::new(192, 168, 100, 1);
        let pools: Vec<_> = (0..3)
            .map(|s| ShardPool::new(net(), server, s, 3))
            .collect();
        assert_eq!(pools.iter().map(ShardPool::size).sum::<usize>(), 253);
        for (s, p) in pools.iter().enumerate() {
            assert!(p
                .free
                .iter()
                .all(|a| owner_shard(Ipv4Addr::from(*a), 3) == s));
            assert!(!p.free.contains(&u32::from(server)));
        }
    }

    #[test]
    fn lease_release_and_exhaustion() {
        let net: Ipv4Net = "10.9.0.0/30".parse().unwrap();
        let mut p = ShardPool::new(net, Ipv4Addr::new(10, 9, 0, 1), 0, 1);
        assert_eq!(p.size(), 1);
        let a = p.lease(None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(p.lease(None), None);
        p.release(a);
        assert_eq!(p.lease(Some(a)), Some(a));
    }

    #[test]
    fn explicit_address_only_when_free_and_owned() {
        let server = Ipv4Addr::new(192, 168, 100, 1);
        let mut p = ShardPool::new(net(), server, 1, 2);
        let odd = Ipv4Addr::new(192, 168, 100, 77);
        assert!(p.take(odd));
        assert!(!p.take(odd), "in use");
        assert!(
            !p.take(Ipv4Addr::new(192, 168, 100, 78)),
            "shard 0's address"
        );
        p.release(odd);
        assert!(p.take(odd));
    }

    #[test]
    fn wanted_address_is_honoured_when_free() {
        let mut p = ShardPool::new(net(), Ipv4Addr::new(192, 168, 100, 1), 0, 1);
        let want = Ipv4Addr::new(192, 168, 100, 77);
        assert_eq!(p.lease(Some(want)), Some(want));
        assert_ne!(p.lease(Some(want)), Some(want));
    }
}
