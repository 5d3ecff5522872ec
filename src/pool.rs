//! Tunnel addresses: one pool for the whole server, kept as one slice per
//! shard.
//!
//! Address `a` belongs to shard `u32(a) % shards`: the TUN steering program
//! (`sys::bpf`) computes exactly this from a packet's destination, so a
//! packet for a lease is read on the queue of the shard that owns it. A
//! shard leases from its own slice first; when that is empty it borrows
//! from another shard's (the caller then steers that one address to itself),
//! so a login is refused for want of an address only when the whole pool is
//! used, with any number of shards, even more shards than addresses.
//!
//! Each slice has its own lock, taken when a session gets its address (its
//! first CONNECT) and when it gives it back, never per packet.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::{Ipv4Net, Ipv6Net};

/// The rule shared with the steering program.
pub fn owner_shard(addr: Ipv4Addr, shards: usize) -> usize {
    (u32::from(addr) % shards as u32) as usize
}

/// Every shard's slice.
#[derive(Debug)]
pub struct Pool {
    slices: Box<[Mutex<ShardPool>]>,
}

impl Pool {
    /// The hosts of `network` minus the server's address, in `shards` slices.
    pub fn new(network: Ipv4Net, server: Ipv4Addr, shards: usize) -> Self {
        let slices = (0..shards.max(1))
            .map(|s| Mutex::new(ShardPool::new(network, server, s, shards.max(1))))
            .collect();
        Self { slices }
    }

    fn slice(&self, i: usize) -> std::sync::MutexGuard<'_, ShardPool> {
        // Every change is one insert or remove: a poisoned lock still holds
        // a whole set.
        self.slices[i % self.slices.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// An address for a session of shard `home`: `wanted` if it is free,
    /// else one from its own slice, else one borrowed from the next shard
    /// that has one. `None`: the pool is used up.
    pub fn lease(&self, home: usize, wanted: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some(w) = wanted.filter(|w| self.take(*w)) {
            return Some(w);
        }
        let n = self.slices.len();
        (0..n).find_map(|k| self.slice(home + k).lease(None))
    }

    /// Takes exactly `addr` (an `explicit-ipv4`) from its owner's slice;
    /// false if it is in use or not in the pool.
    pub fn take(&self, addr: Ipv4Addr) -> bool {
        self.slice(owner_shard(addr, self.slices.len())).take(addr)
    }

    /// Gives `addr` back to its owner's slice.
    pub fn release(&self, addr: Ipv4Addr) {
        self.slice(owner_shard(addr, self.slices.len()))
            .release(addr);
    }

    /// Free addresses in the whole pool.
    pub fn free(&self) -> usize {
        (0..self.slices.len()).map(|i| self.slice(i).free()).sum()
    }

    /// Client addresses in the whole pool.
    pub fn size(&self) -> usize {
        (0..self.slices.len()).map(|i| self.slice(i).size()).sum()
    }
}

/// The server's pool and those of the networks user and group files name
/// (`ipv4-network`), made at the first login that names one and kept for
/// the process. Networks never overlap, so an address says its pool.
#[derive(Debug)]
pub struct Pools {
    server_net: Ipv4Net,
    server: Arc<Pool>,
    users: Mutex<Vec<(Ipv4Net, Arc<Pool>)>>,
    /// User and group files' IPv6 networks routed so far.
    routed6: Mutex<Vec<Ipv6Net>>,
    shards: usize,
}

impl Pools {
    pub fn new(network: Ipv4Net, server: Ipv4Addr, shards: usize) -> Self {
        Self {
            server_net: network,
            server: Arc::new(Pool::new(network, server, shards)),
            users: Mutex::new(Vec::new()),
            routed6: Mutex::new(Vec::new()),
            shards,
        }
    }

    /// The server's own pool (`ipv4_network`).
    pub fn server(&self) -> &Pool {
        &self.server
    }

    fn users(&self) -> std::sync::MutexGuard<'_, Vec<(Ipv4Net, Arc<Pool>)>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pool of `net` (`None`: the server's). A new one is made after
    /// `route` (which routes it to the TUN device) succeeds; one that
    /// overlaps another pool is refused with the reason.
    pub fn of(
        &self,
        net: Option<Ipv4Net>,
        route: impl FnOnce(Ipv4Net) -> Result<(), String>,
    ) -> Result<Arc<Pool>, String> {
        let net = match net {
            None => return Ok(self.server.clone()),
            Some(n) if n == self.server_net => return Ok(self.server.clone()),
            Some(n) => n,
        };
        let overlaps = |o: &Ipv4Net| o.contains(&net.network()) || net.contains(&o.network());
        let mut users = self.users();
        if let Some((_, p)) = users.iter().find(|(n, _)| *n == net) {
            return Ok(p.clone());
        }
        if let Some(o) = std::iter::once(&self.server_net)
            .chain(users.iter().map(|(n, _)| n))
            .find(|o| overlaps(o))
        {
            return Err(format!("ipv4-network {net} overlaps the pool {o}"));
        }
        route(net)?;
        let server = Ipv4Addr::from(u32::from(net.network()) + 1);
        let pool = Arc::new(Pool::new(net, server, self.shards));
        users.push((net, pool.clone()));
        Ok(pool)
    }

    /// Runs `route` for a user's IPv6 network the first time one names it.
    /// IPv6 networks may overlap: addresses end in their (unique) leases.
    pub fn route6_once(
        &self,
        net: Ipv6Net,
        route: impl FnOnce(Ipv6Net) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut routed = self.routed6.lock().unwrap_or_else(PoisonError::into_inner);
        if !routed.contains(&net) {
            route(net)?;
            routed.push(net);
        }
        Ok(())
    }

    /// The pool `addr` belongs to.
    pub fn holding(&self, addr: Ipv4Addr) -> Option<Arc<Pool>> {
        if self.server_net.contains(&addr) {
            return Some(self.server.clone());
        }
        self.users()
            .iter()
            .find(|(n, _)| n.contains(&addr))
            .map(|(_, p)| p.clone())
    }

    /// Gives `addr` back to its pool.
    pub fn release(&self, addr: Ipv4Addr) {
        if let Some(p) = self.holding(addr) {
            p.release(addr);
        }
    }

    /// The networks of user and group files in use so far.
    pub fn user_networks(&self) -> Vec<Ipv4Net> {
        self.users().iter().map(|(n, _)| *n).collect()
    }
}

/// `user`'s own address in `network` (ocserv's predictable-ips): the same
/// one at every login while it is free. FNV-1a of the name: stable across
/// restarts and versions, which a std hasher is not.
pub fn predictable(network: Ipv4Net, user: &str) -> Ipv4Addr {
    let hash = user.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let hosts = (1u64 << (32 - network.prefix_len()))
        .saturating_sub(2)
        .max(1);
    let offset = 1 + u64::from(hash) % hosts;
    Ipv4Addr::from(u32::from(network.network()).wrapping_add(offset as u32))
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

    #[test]
    fn a_shard_borrows_when_its_slice_is_empty() {
        // A /29 leaves 5 client addresses; 4 shards own 2, 1, 1 and 1.
        let net: Ipv4Net = "10.9.0.0/29".parse().unwrap();
        let pool = Pool::new(net, Ipv4Addr::new(10, 9, 0, 1), 4);
        assert_eq!(pool.size(), 5);
        let mine: Vec<_> = (0..5)
            .map(|_| pool.lease(1, None).expect("the pool is not used up"))
            .collect();
        assert_eq!(owner_shard(mine[0], 4), 1, "own slice first");
        assert_eq!(pool.lease(1, None), None, "every address is leased");
        assert_eq!(pool.free(), 0);
        for a in &mine {
            pool.release(*a);
        }
        assert_eq!(pool.free(), 5);
        // A taken address is gone for the borrowing loop too.
        assert!(pool.take(Ipv4Addr::new(10, 9, 0, 6)));
        assert!(!pool.take(Ipv4Addr::new(10, 9, 0, 6)));
        assert_eq!((0..4).filter_map(|_| pool.lease(0, None)).count(), 4);
    }

    #[test]
    fn a_user_gets_the_same_address_while_it_is_free() {
        let net: Ipv4Net = "10.9.0.0/24".parse().unwrap();
        let pool = Pool::new(net, Ipv4Addr::new(10, 9, 0, 1), 2);
        let want = predictable(net, "alice");
        assert!(net.contains(&want) && want != net.network() && want != net.broadcast());
        assert_eq!(predictable(net, "alice"), want, "stable");
        assert_ne!(predictable(net, "bob"), want);
        assert_eq!(
            pool.lease(0, Some(want)),
            Some(want),
            "another shard's slice too"
        );
        let next = pool.lease(0, Some(want)).unwrap();
        assert_ne!(next, want, "taken: any other");
        pool.release(want);
        assert_eq!(pool.lease(1, Some(want)), Some(want));
    }

    #[test]
    fn user_pools_are_made_once_and_never_overlap() {
        let pools = Pools::new(net(), Ipv4Addr::new(192, 168, 100, 1), 2);
        let routed = std::cell::Cell::new(0);
        let route = |_| {
            routed.set(routed.get() + 1);
            Ok(())
        };
        let same = pools.of(Some(net()), route).unwrap();
        assert!(
            Arc::ptr_eq(&same, &pools.server),
            "the server's own network"
        );
        let n: Ipv4Net = "10.50.0.0/29".parse().unwrap();
        let p = pools.of(Some(n), route).unwrap();
        assert_eq!(p.size(), 5, "the network's first host is the server's");
        assert!(Arc::ptr_eq(&p, &pools.of(Some(n), route).unwrap()));
        assert_eq!(routed.get(), 1, "routed once");
        for bad in ["10.50.0.0/16", "10.50.0.4/30", "192.168.100.128/25"] {
            assert!(
                pools.of(Some(bad.parse().unwrap()), route).is_err(),
                "{bad}"
            );
        }
        assert!(pools
            .of(Some("10.51.0.0/24".parse().unwrap()), |_| Err("no".into()))
            .is_err());
        assert_eq!(pools.user_networks(), [n]);
        let a = p.lease(0, None).unwrap();
        assert!(n.contains(&a) && a != Ipv4Addr::new(10, 50, 0, 1));
        assert!(Arc::ptr_eq(&pools.holding(a).unwrap(), &p));
        pools.release(a);
        assert_eq!(p.free(), 5);
        pools.release(Ipv4Addr::new(10, 99, 0, 1));
    }

    #[test]
    fn more_shards_than_addresses() {
        let net: Ipv4Net = "10.9.0.0/30".parse().unwrap();
        let pool = Pool::new(net, Ipv4Addr::new(10, 9, 0, 1), 64);
        assert_eq!(pool.size(), 1);
        let a = pool.lease(63, None).expect("the one address");
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(pool.lease(0, None), None);
        pool.release(a);
        assert_eq!(pool.lease(7, None), Some(a));
    }
}
